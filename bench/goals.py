"""The goals `make bench` reports on, each as (target, streamfn's figure, the baseline's, ratio or
difference, goal, met), from one run's figures (bench/results.json): issue 13's against the
baselines, issue 20's for the Gemini and Bedrock providers against the OpenAI one, the fleet
on Redis against one process, and the Messages and Responses routes against Chat Completions;
issue 26's for tracing (bench/traced.py) and issue 23's for Managed Instances (bench/lmi.py).
`all_goals` gives those whose targets a run measured (BENCH_ONLY runs some only).
"""

from __future__ import annotations

import math
from typing import Any

TARGET_STREAMS = 1000  # the concurrency the targets are set at


def fmt(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.2f}{unit}" if abs(value) < 10 else f"{value:.1f}{unit}"


def rung(rows: dict[str, Any], name: str, n: int) -> dict[str, Any]:
    ladder = rows.get(name, {}).get("ladder", {})
    return dict(ladder.get(str(n)) or ladder.get(n) or {})


def common_rung(rows: dict[str, Any], *names: str) -> int | None:
    """TARGET_STREAMS if every one of `names` reached it, else the most streams they all ran
    (a quick run's ladder stops lower)."""
    counts = [{int(n) for n in rows.get(name, {}).get("ladder", {})} for name in names]
    common = set.intersection(*counts) if counts else set()
    if TARGET_STREAMS in common:
        return TARGET_STREAMS
    return max(common, default=None)


Row = tuple[str, str, str, str, str, bool | str]

PROVIDERS = {"gemini": "Gemini", "bedrock": "Bedrock"}


def provider_targets(rows: dict[str, Any]) -> list[Row]:
    """Issue 20's, for each provider against `streamfn` (the OpenAI provider) in the same run:
    1,000 streams complete and exact, CPU per token and idle memory within 1.2x, no loop stall
    over 50 ms, the thread count flat."""
    out: list[Row] = []
    openai = rows["streamfn"]
    for name, title in PROVIDERS.items():
        mine = rows.get(name, {})
        if "skipped" in mine or not mine:
            why = mine.get("skipped", "not measured")
            out.append((f"{title}: not measured", why, "", "", "", "skipped"))
            continue
        n = common_rung(rows, name, "streamfn")
        if n is not None:
            r, o = rung(rows, name, n), rung(rows, "streamfn", n)
            out.append(
                (
                    f"{title}: {n:,} streams at 50 tokens/s, complete and exact",
                    f"{r['complete']:,}",
                    f"OpenAI {o['complete']:,}",
                    "",
                    f"{n:,}",
                    r["complete"] == n,
                )
            )
            cost = o["tokens_per_cpu_s"] / r["tokens_per_cpu_s"]  # CPU per token, against
            out.append(
                (
                    f"{title}: CPU per token, {n:,} streams (tokens per CPU second)",
                    fmt(r["tokens_per_cpu_s"]),
                    f"OpenAI {fmt(o['tokens_per_cpu_s'])}",
                    f"{cost:.2f}x",
                    "<= 1.2x",
                    cost <= 1.2,
                )
            )
            out.append(
                (
                    f"{title}: longest event-loop stall, {n:,} streams",
                    fmt(r["max_lag_ms"], " ms"),
                    f"OpenAI {fmt(o['max_lag_ms'], ' ms')}",
                    "",
                    "<= 50 ms",
                    r["max_lag_ms"] <= 50,
                )
            )
            if "max_gc_ms" in r:
                out.append(
                    (
                        f"{title}: longest garbage collection, {n:,} streams",
                        fmt(r["max_gc_ms"], " ms"),
                        f"OpenAI {fmt(o.get('max_gc_ms', math.nan), ' ms')}",
                        "",
                        "<= 50 ms",
                        r["max_gc_ms"] <= 50,
                    )
                )
            threads = r.get("threads")
            if threads:
                out.append(
                    (
                        f"{title}: server threads before / during / after {n:,} streams",
                        " / ".join(f"{t:.0f}" for t in threads),
                        "OpenAI " + " / ".join(f"{t:.0f}" for t in o.get("threads", [])),
                        f"{max(threads) - threads[0]:+.0f}",
                        "flat",
                        len(set(threads)) == 1,
                    )
                )
        if "idle_kib_per_stream" in mine and "idle_kib_per_stream" in openai:
            kib, base = mine["idle_kib_per_stream"], openai["idle_kib_per_stream"]
            out.append(
                (
                    f"{title}: resident memory per idle open stream",
                    fmt(kib, " KiB"),
                    f"OpenAI {fmt(base, ' KiB')}",
                    f"{kib / base:.2f}x",
                    "<= 1.2x",
                    kib / base <= 1.2,
                )
            )
        elif "idle_problem" in mine:
            out.append(
                (
                    f"{title}: resident memory per idle open stream",
                    "not measured: " + mine["idle_problem"],
                    f"OpenAI {fmt(openai.get('idle_kib_per_stream', math.nan), ' KiB')}",
                    "",
                    "<= 1.2x",
                    "skipped",
                )
            )
    return out


def fleet_targets(rows: dict[str, Any]) -> list[Row]:
    """Three processes on one Redis against one process on the same Redis, in the same run
    (no goal set: the cost of spreading streams over a fleet)."""
    fleet, one = rows.get("fleet", {}), rows.get("redis", {})
    if "skipped" in fleet or not one:
        return [
            ("fleet of 3 on one Redis", fleet.get("skipped", "not measured"), "", "", "", "skipped")
        ]
    n = common_rung(rows, "fleet", "redis")
    f, o = rung(rows, "fleet", n or 0), rung(rows, "redis", n or 0)
    added = fleet["ttft_p50_ms"] - one["ttft_p50_ms"]
    return [
        (
            f"fleet of 3 on one Redis: {n:,} streams, complete and exact",
            f"{f['complete']:,}",
            f"one process {o['complete']:,}",
            "",
            f"{n:,}",
            f["complete"] == n,
        ),
        (
            f"fleet of 3 on one Redis: tokens per CPU second (the three summed), {n:,} streams",
            fmt(f["tokens_per_cpu_s"]),
            f"one process {fmt(o['tokens_per_cpu_s'])}",
            f"{f['tokens_per_cpu_s'] / o['tokens_per_cpu_s']:.2f}x",
            "none set",
            "-",
        ),
        (
            "fleet of 3 on one Redis: added time to first token, p50, one stream at a time",
            fmt(fleet["ttft_p50_ms"], " ms"),
            f"one process {fmt(one['ttft_p50_ms'], ' ms')}",
            f"{added:+.2f} ms",
            "none set",
            "-",
        ),
    ]


def targets(rows: dict[str, Any]) -> list[Row]:
    """(target, streamfn, baseline, ratio or difference, goal, met) for each of issue 13's."""
    s, relay, seed, up = rows["streamfn"], rows["relay"], rows["seed"], rows["upstream"]
    out = []
    tps = s["tokens_per_s"]
    out.append(
        (
            "1a. one stream at full speed, tokens/s",
            fmt(tps),
            f"relay {fmt(relay['tokens_per_s'])}",
            f"{tps / relay['tokens_per_s']:.2f}x",
            ">= 0.8x",
            tps / relay["tokens_per_s"] >= 0.8,
        )
    )
    out.append(
        (
            "1b. one stream at full speed, tokens/s",
            fmt(tps),
            f"seed {fmt(seed['tokens_per_s'])}",
            f"{tps / seed['tokens_per_s']:.1f}x",
            ">= 4x",
            tps / seed["tokens_per_s"] >= 4,
        )
    )
    added, relay_added = (
        s["ttft_p50_ms"] - up["ttft_p50_ms"],
        relay["ttft_p50_ms"] - up["ttft_p50_ms"],
    )
    out.append(
        (
            "2a. added time to first token, p50, one stream",
            fmt(added, " ms"),
            f"relay {fmt(relay_added, ' ms')}",
            f"{added - relay_added:+.2f} ms",
            "<= +0.5 ms",
            added - relay_added <= 0.5,
        )
    )
    if "open_ttft_p50_ms" in s and "open_ttft_p50_ms" in relay:
        open_added = s["open_ttft_p50_ms"] - up["ttft_p50_ms"]
        relay_open = relay["open_ttft_p50_ms"] - up["ttft_p50_ms"]
        out.append(
            (
                f"2a. added time to first token, p50, one stream, {TARGET_STREAMS:,} others open",
                fmt(open_added, " ms"),
                f"relay {fmt(relay_open, ' ms')}",
                f"{open_added - relay_open:+.2f} ms",
                "<= +0.5 ms",
                open_added - relay_open <= 0.5,
            )
        )
    out.append(
        (
            "2b. time to first token, p99, 200 concurrent",
            fmt(s["ttft200_p99_ms"], " ms"),
            f"relay {fmt(relay['ttft200_p99_ms'], ' ms')}",
            f"{s['ttft200_p99_ms'] / relay['ttft200_p99_ms']:.2f}x",
            "<= 1x",
            s["ttft200_p99_ms"] <= relay["ttft200_p99_ms"],
        )
    )
    mine, theirs = rung(rows, "streamfn", TARGET_STREAMS), rung(rows, "relay", TARGET_STREAMS)
    if mine and theirs:
        out.append(
            (
                f"3a. {TARGET_STREAMS:,} streams at 50 tokens/s, complete and exact",
                f"{mine['complete']:,}",
                f"relay {theirs['complete']:,}",
                "",
                f"{TARGET_STREAMS:,}",
                mine["complete"] == TARGET_STREAMS,
            )
        )
        out.append(
            (
                f"3b. {TARGET_STREAMS:,} streams, p99 inter-token delay over the pace",
                fmt(mine["gap_p99_ms"], " ms"),
                f"relay {fmt(theirs['gap_p99_ms'], ' ms')}",
                f"{mine['gap_p99_ms'] / max(theirs['gap_p99_ms'], 1e-9):.2f}x",
                "<= 1x",
                mine["gap_p99_ms"] <= theirs["gap_p99_ms"],
            )
        )
        out.append(
            (
                f"5. longest event-loop stall, {TARGET_STREAMS:,} streams at 50 tokens/s",
                fmt(mine["max_lag_ms"], " ms"),
                f"relay {fmt(theirs['max_lag_ms'], ' ms')}",
                "",
                "<= 50 ms",
                mine["max_lag_ms"] <= 50,
            )
        )
        if "max_gc_ms" in mine:
            out.append(
                (
                    f"5. longest garbage collection, {TARGET_STREAMS:,} streams at 50 tokens/s",
                    fmt(mine["max_gc_ms"], " ms"),
                    f"relay {fmt(theirs.get('max_gc_ms', math.nan), ' ms')}",
                    "",
                    "<= 50 ms",
                    mine["max_gc_ms"] <= 50,
                )
            )
    if "open_max_lag_ms" in s:
        out.append(
            (
                f"5. longest event-loop stall, {TARGET_STREAMS:,} idle streams open, "
                "requests one at a time",
                fmt(s["open_max_lag_ms"], " ms"),
                f"relay {fmt(relay.get('open_max_lag_ms', math.nan), ' ms')}",
                "",
                "<= 50 ms",
                s["open_max_lag_ms"] <= 50,
            )
        )
    out.append(
        (
            "5. longest event-loop stall, a fresh process's first request",
            fmt(s["first_use_lag_ms"], " ms"),
            f"seed {fmt(seed['first_use_lag_ms'], ' ms')}",
            "",
            "<= 50 ms",
            s["first_use_lag_ms"] <= 50,
        )
    )
    if "idle_kib_per_stream" in s:
        out.append(
            (
                "4. resident memory per idle open stream",
                fmt(s["idle_kib_per_stream"], " KiB"),
                f"relay {fmt(relay['idle_kib_per_stream'], ' KiB')}",
                f"{s['idle_kib_per_stream'] / relay['idle_kib_per_stream']:.2f}x",
                "< 50 KiB",
                s["idle_kib_per_stream"] < 50,
            )
        )
    lam = rows["lambda"]
    cold, minimal = lam["cold_start_ms"]["streamfn"], lam["cold_start_ms"]["minimal"]
    out.append(
        (
            "6. Lambda cold start, process start to first body byte",
            fmt(cold, " ms"),
            f"minimal httpx loop {fmt(minimal, ' ms')}",
            f"{cold - minimal:+.0f} ms",
            "< +300 ms",
            cold - minimal < 300,
        )
    )
    per = lam["per_token_us"]
    out.append(
        (
            "7. Lambda path's cost per token",
            fmt(per["lambda"], " us"),
            f"uvicorn {fmt(per['uvicorn'], ' us')}",
            f"{per['lambda'] / per['uvicorn']:.2f}x",
            "<= 1.2x",
            per["lambda"] / per["uvicorn"] <= 1.2,
        )
    )
    return out


PROTOCOLS = {
    "messages": "Messages API (/v1/messages)",
    "responses": "Responses API (/v1/responses)",
}


def protocol_targets(rows: dict[str, Any]) -> list[Row]:
    """The Messages and Responses routes against `/v1/chat/completions` (the `chat` target), the
    same app, provider and upstream, in the same run: a fast stream's tokens/s within 0.9x, and
    the time to first token added over the upstream read directly, p50 one stream at a time,
    within 1.1x of Chat Completions' (a fraction of a millisecond: the noisiest of the goals,
    so read from bench/paired.py's side-by-side figures when they were measured)."""
    from bench.paired import of

    chat, up = of(rows, "chat"), of(rows, "upstream")
    if "tokens_per_s" not in chat or "ttft_p50_ms" not in up:
        why = chat.get("skipped", "Chat Completions or the upstream not measured")
        return [("Messages and Responses against Chat Completions", why, "", "", "", "skipped")]
    chat_added = chat["ttft_p50_ms"] - up["ttft_p50_ms"]
    out: list[Row] = []
    for name, title in PROTOCOLS.items():
        mine = of(rows, name)
        if "tokens_per_s" not in mine:
            out.append((f"{title}: not measured", mine.get("skipped", ""), "", "", "", "skipped"))
            continue
        tps = mine["tokens_per_s"] / chat["tokens_per_s"]
        out.append(
            (
                f"{title}: one stream at full speed, tokens/s",
                fmt(mine["tokens_per_s"]),
                f"chat completions {fmt(chat['tokens_per_s'])}",
                f"{tps:.2f}x",
                ">= 0.9x",
                tps >= 0.9,
            )
        )
        added = mine["ttft_p50_ms"] - up["ttft_p50_ms"]
        ratio = f"{added / chat_added:.2f}x, " if chat_added > 0 else ""
        out.append(
            (
                f"{title}: added time to first token, p50, one stream",
                fmt(added, " ms"),
                f"chat completions {fmt(chat_added, ' ms')}",
                f"{ratio}{added - chat_added:+.2f} ms",
                "<= 1.1x",
                added <= 1.1 * chat_added,
            )
        )
    return out


# Each group of goals, and the targets it needs: a run that measured only some (BENCH_ONLY)
# reports the groups it can.
GROUPS = (
    (targets, ("upstream", "relay", "seed", "streamfn", "lambda")),
    (provider_targets, ("streamfn",)),
    (fleet_targets, ("fleet",)),
    (protocol_targets, ("chat",)),
)


def all_goals(rows: dict[str, Any]) -> list[Row]:
    # The tracing and Managed Instances goals live beside what measures them, and import this.
    from bench import lmi, traced

    out: list[Row] = []
    for group, needs in (*GROUPS, (traced.goals, ("traced",)), (lmi.goals, ("lmi",))):
        if all(name in rows for name in needs):
            out += group(rows)
    return out
