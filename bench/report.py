"""BENCHMARKS.md and its plot, from one run's figures (bench/results.json)."""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench.goals import all_goals, common_rung, fmt, rung

# The targets of the concurrency and single-stream tables, in their order.
LISTED = (
    "upstream",
    "relay",
    "seed",
    "streamfn",
    "traced",
    "gemini",
    "bedrock",
    "chat",
    "messages",
    "responses",
)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def plot(rows: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in (
        ("relay", "raw Starlette relay"),
        ("seed", "seed design"),
        ("streamfn", "streamfn"),
        ("traced", "streamfn, OpenTelemetry on"),
        ("gemini", "streamfn, Gemini"),
        ("bedrock", "streamfn, Bedrock"),
        ("chat", "streamfn, /v1/chat/completions"),
        ("messages", "streamfn, /v1/messages"),
        ("responses", "streamfn, /v1/responses"),
    ):
        ladder = rows.get(name, {}).get("ladder", {})
        if not ladder:
            continue
        counts = sorted(int(n) for n in ladder)
        left.plot(counts, [ladder[str(n)]["tokens_per_cpu_s"] for n in counts], "o-", label=label)
        right.plot(counts, [ladder[str(n)]["gap_p99_ms"] for n in counts], "o-", label=label)
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("concurrent streams (50 tokens/s each)")
        axis.grid(True, alpha=0.3)
        axis.legend()
    left.set_ylabel("tokens per CPU second of the server")
    right.set_ylabel("p99 inter-token delay over the pace (ms)")
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def fleet_section(rows: dict[str, Any]) -> list[str]:
    """The fleet against one process on the same Redis, and that process against the SQLite
    log's (`streamfn`), at the same number of streams."""
    lines = ["", "## A fleet on Redis", ""]
    fleet = rows.get("fleet", {})
    if "skipped" in fleet or "redis" not in rows:
        return [*lines, f"Not measured: {fleet.get('skipped', 'no figures')}."]
    n = common_rung(rows, "fleet", "redis", "streamfn")
    lines += [
        f"{n:,} streams at 50 tokens/s; time to first token one stream at a time (round-robin",
        "over the fleet), and with 200 at once.",
        "",
        "| setup | complete | tokens per CPU s (servers) | Redis's CPU s | tokens per CPU s, "
        "Redis's counted | TTFT p50 | 200 at once: TTFT p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("streamfn", "one process, SQLite log"),
        ("redis", "one process on Redis"),
        ("fleet", "three processes on one Redis"),
    ):
        r, step = rows[name], rung(rows, name, n or 0)
        if not step:
            continue
        redis_s = r.get("redis_cpu_s")
        counted = math.nan  # the servers' and Redis's CPU seconds together
        if redis_s is not None and "tokens" in step:
            counted = step["tokens"] / (step["cpu_s"] + redis_s)
        lines.append(
            f"| {label} | {step['complete']:,} | {fmt(step['tokens_per_cpu_s'])} | "
            f"{fmt(redis_s if redis_s is not None else math.nan)} | {fmt(counted)} | "
            f"{fmt(r['ttft_p50_ms'], ' ms')} | {fmt(r['ttft200_p50_ms'], ' ms')} / "
            f"{fmt(r['ttft200_p99_ms'], ' ms')} |"
        )
    one, sqlite = rung(rows, "redis", n or 0), rung(rows, "streamfn", n or 0)
    if one and sqlite:
        lines += [
            "",
            "One process on Redis against the SQLite log's: tokens per CPU second "
            f"{one['tokens_per_cpu_s'] / sqlite['tokens_per_cpu_s']:.2f}x, time to first token "
            f"p50 {rows['redis']['ttft_p50_ms'] - rows['streamfn']['ttft_p50_ms']:+.2f} ms.",
        ]
    return lines


def write(
    rows: dict[str, Any], path: Path, picture: Path, quick: bool, partial: bool = False
) -> None:
    """BENCHMARKS.md at `path`, its plot at `picture`; `partial`: a BENCH_ONLY run's."""
    try:
        plot(rows, picture)
    except ImportError:  # matplotlib: the bench extra, which `make bench` installs
        if not quick:
            raise
        sys.stderr.write("matplotlib is not installed: a quick run without the plot\n")
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); every figure below comes from one run on the",
        "machine named at the end, on loopback, with a baseline measured in the same run. The",
        "machine is shared and noisy: compare ratios, not absolute figures, across runs.",
        "",
    ]
    if quick:
        lines += ["**A quick run (BENCH_QUICK=1): smaller counts, not figures to report.**", ""]
    if partial:
        lines += ["**A partial run (BENCH_ONLY): the goals of the targets it measured only.**", ""]
    lines += [
        "Setup: a fake OpenAI upstream (bench/upstream.py, one write per token), each target in",
        "a process of its own on uvicorn with uvloop and httptools, and one load generator",
        "(bench/load.py) for all. The baselines: the upstream read directly; a raw Starlette",
        "relay re-emitting the upstream's bytes through one httpx client (the floor for any",
        "Python relay); the seed's design (FastAPI + sse-starlette + AsyncOpenAI, one event per",
        "token). streamfn serves its native `/chat/stream` with the OpenAI provider, resume on",
        "(every stream's events journalled to a SQLite log, as `make run` does).",
        "",
        "The Gemini and Bedrock targets are the same app with `provider: gemini` or `bedrock`,",
        "against the tests' fakes of those APIs in their benchmark mode (tests/fakes/gemini.py:",
        "SSE; tests/fakes/bedrock.py: AWS's binary event stream, every request SigV4-signed with",
        "fake credentials), compared with the OpenAI target (`OpenAI` below) of the same run.",
        "The fleet is three streamfn processes sharing one Redis (STREAMFN_REDIS_URL: limits,",
        "slots and the resume log there), streams spread round-robin over them, against one",
        "process on the same Redis.",
        "",
        "`chat`, `messages` and `responses` are the OpenAI target's app on its client-protocol",
        "routes, `/v1/chat/completions`, `/v1/messages` and `/v1/responses` (a bare model: the",
        "default provider, OpenAI), each with its protocol's streaming body (`responses` with",
        "`store` at its default, true: every response kept in the SQLite file). Messages and",
        "Responses are compared with Chat Completions of the same run; their added time to",
        "first token is over the upstream read directly, as 2a's is.",
        "",
        "`traced` is the OpenAI target with OpenTelemetry on: `OTEL_EXPORTER_OTLP_ENDPOINT` set",
        "to a receiver on loopback (tests/fakes/otlp.py, decoding every export), so a trace per",
        "request and the GenAI metrics go out over OTLP/HTTP; compared with the OpenAI target,",
        "tracing off, of the same run.",
        "",
        "The loop stall is the longest a task asking to sleep 5 ms woke late: any block of the",
        "event loop, a collection or a burst of work queued at once. At 1,000 streams at 50",
        "tokens/s (the fake sends every stream's token on one tick) every target is past what",
        'one core serves, and the stall is that queue; "others open" measures the stall, and',
        "the time to first token, with 1,000 streams open and idle after their first token",
        "(fresh process, one request at a time). The longest collection is timed by the",
        "collector's own callbacks.",
        "",
        "## Targets",
        "",
        "| target | streamfn | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, mine, base, ratio, goal, met in all_goals(rows):
        shown = met if isinstance(met, str) else "yes" if met else "no"
        lines.append(f"| {name} | {mine} | {base} | {ratio} | {goal} | {shown} |")
    shown_at = os.path.relpath(picture, path.parent)  # the plot, from where BENCHMARKS.md is
    lines += ["", "## Concurrency", "", f"![tokens per CPU second and delay]({shown_at})", ""]
    lines += [
        "| target | streams | complete | p99 delay over pace | tokens per CPU s | loop stall "
        "| longest collection | threads before / during / after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in (*LISTED, "redis", "fleet"):
        ladder = rows.get(name, {}).get("ladder", {})
        for n, step in sorted(ladder.items(), key=lambda kv: int(kv[0])):
            threads = " / ".join(f"{t:.0f}" for t in step.get("threads", [])) or "n/a"
            lines.append(
                f"| {name} | {int(n):,} | {step['complete']:,} | "
                f"{fmt(step['gap_p99_ms'], ' ms')} | {fmt(step['tokens_per_cpu_s'])} | "
                f"{fmt(step['max_lag_ms'], ' ms')} | "
                f"{fmt(step.get('max_gc_ms', math.nan), ' ms')} | {threads} |"
            )
    lines += [
        "",
        "The upstream's row counts wall time, not CPU (it has no probe). `redis` is one streamfn",
        "process on Redis, `fleet` three on the same Redis (CPU and threads summed over the",
        "three, the loop stall the longest of theirs).",
        "",
        "## Single stream and first token",
        "",
        "| target | tokens/s | TTFT p50 | 200 at once: TTFT p50 / p99 | first request's stall |",
        "|---|---|---|---|---|",
    ]
    for name in LISTED:
        r = rows.get(name, {})
        if "tokens_per_s" not in r:
            continue
        lines.append(
            f"| {name} | {fmt(r['tokens_per_s'])} | {fmt(r['ttft_p50_ms'], ' ms')} | "
            f"{fmt(r['ttft200_p50_ms'], ' ms')} / {fmt(r['ttft200_p99_ms'], ' ms')} | "
            f"{fmt(r.get('first_use_lag_ms', math.nan), ' ms')} |"
        )
    lines += fleet_section(rows)
    if "lambda" in rows:
        lines += lambda_section(rows["lambda"])
    if "lmi" in rows:
        from bench import lmi

        lines += lmi.section(rows)
    if "nonreaders" in rows:
        from bench import nonreaders

        lines += nonreaders.section(rows)
    lines += ["", "## Machine", "", _machine(), ""]
    path.write_text("\n".join(lines))


def lambda_section(lam: dict[str, Any]) -> list[str]:
    cold = lam["cold_start_ms"]
    lines = [
        "",
        "## Lambda path",
        "",
        "| figure | ms or us |",
        "|---|---|",
        f"| cold start, streamfn (runtime started to first body byte) | {fmt(cold['streamfn'])} |",
        f"| cold start, a minimal httpx Runtime API loop | {fmt(cold['minimal'])} |",
        "| SnapStart restore path (parked at the snapshot point; request to first byte: keys "
        f"read again, app rebuilt, invocation) | {fmt(cold.get('snapstart_restore', math.nan))} |",
        f"| per token, uvicorn (echo, 2,000 tokens) | {fmt(lam['per_token_us']['uvicorn'])} |",
        f"| per token, Lambda path | {fmt(lam['per_token_us']['lambda'])} |",
        "",
        "Cold starts are medians of 5, per-token costs of 7; the request waits in the emulator",
        "while the runtime starts, as a cold start's does.",
        "",
        "Import time (ms, `-X importtime` on the layer's packages, median of 3; each package's",
        "cumulative time where it is first entered, so nested packages also count in their",
        "importer's):",
        "",
    ]
    for what, times in lam["imports_ms"].items():
        top = sorted(times.items(), key=lambda kv: -kv[1])[:8]
        listed = ", ".join(f"{name} {ms:.0f}" for name, ms in top)
        lines.append(f"- **{what}**: {listed}")
    return lines
