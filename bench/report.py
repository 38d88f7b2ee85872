"""BENCHMARKS.md and its plot, from one run's figures (bench/results.json)."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

TARGET_STREAMS = 1000  # the concurrency the targets are set at


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


def _fmt(value: float, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.2f}{unit}" if abs(value) < 10 else f"{value:.1f}{unit}"


def _rung(rows: dict[str, Any], name: str, n: int) -> dict[str, float]:
    ladder = rows.get(name, {}).get("ladder", {})
    return dict(ladder.get(str(n)) or ladder.get(n) or {})


def targets(rows: dict[str, Any]) -> list[tuple[str, str, str, str, str, bool]]:
    """(target, streamfn, baseline, ratio or difference, goal, met) for each of issue 13's."""
    s, relay, seed, up = rows["streamfn"], rows["relay"], rows["seed"], rows["upstream"]
    out = []
    tps = s["tokens_per_s"]
    out.append(
        (
            "1a. one stream at full speed, tokens/s",
            _fmt(tps),
            f"relay {_fmt(relay['tokens_per_s'])}",
            f"{tps / relay['tokens_per_s']:.2f}x",
            ">= 0.8x",
            tps / relay["tokens_per_s"] >= 0.8,
        )
    )
    out.append(
        (
            "1b. one stream at full speed, tokens/s",
            _fmt(tps),
            f"seed {_fmt(seed['tokens_per_s'])}",
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
            _fmt(added, " ms"),
            f"relay {_fmt(relay_added, ' ms')}",
            f"{added - relay_added:+.2f} ms",
            "<= +0.5 ms",
            added - relay_added <= 0.5,
        )
    )
    out.append(
        (
            "2b. time to first token, p99, 200 concurrent",
            _fmt(s["ttft200_p99_ms"], " ms"),
            f"relay {_fmt(relay['ttft200_p99_ms'], ' ms')}",
            f"{s['ttft200_p99_ms'] / relay['ttft200_p99_ms']:.2f}x",
            "<= 1x",
            s["ttft200_p99_ms"] <= relay["ttft200_p99_ms"],
        )
    )
    mine, theirs = _rung(rows, "streamfn", TARGET_STREAMS), _rung(rows, "relay", TARGET_STREAMS)
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
                _fmt(mine["gap_p99_ms"], " ms"),
                f"relay {_fmt(theirs['gap_p99_ms'], ' ms')}",
                f"{mine['gap_p99_ms'] / max(theirs['gap_p99_ms'], 1e-9):.2f}x",
                "<= 1x",
                mine["gap_p99_ms"] <= theirs["gap_p99_ms"],
            )
        )
        out.append(
            (
                f"5. longest event-loop stall, {TARGET_STREAMS:,} streams",
                _fmt(mine["max_lag_ms"], " ms"),
                f"relay {_fmt(theirs['max_lag_ms'], ' ms')}",
                "",
                "<= 50 ms",
                mine["max_lag_ms"] <= 50,
            )
        )
    out.append(
        (
            "5. longest event-loop stall, a fresh process's first request",
            _fmt(s["first_use_lag_ms"], " ms"),
            f"seed {_fmt(seed['first_use_lag_ms'], ' ms')}",
            "",
            "<= 50 ms",
            s["first_use_lag_ms"] <= 50,
        )
    )
    if "idle_kib_per_stream" in s:
        out.append(
            (
                "4. resident memory per idle open stream",
                _fmt(s["idle_kib_per_stream"], " KiB"),
                f"relay {_fmt(relay['idle_kib_per_stream'], ' KiB')}",
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
            _fmt(cold, " ms"),
            f"minimal httpx loop {_fmt(minimal, ' ms')}",
            f"{cold - minimal:+.0f} ms",
            "< +300 ms",
            cold - minimal < 300,
        )
    )
    per = lam["per_token_us"]
    out.append(
        (
            "7. Lambda path's cost per token",
            _fmt(per["lambda"], " us"),
            f"uvicorn {_fmt(per['uvicorn'], ' us')}",
            f"{per['lambda'] / per['uvicorn']:.2f}x",
            "<= 1.2x",
            per["lambda"] / per["uvicorn"] <= 1.2,
        )
    )
    return out


def plot(rows: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in (
        ("relay", "raw Starlette relay"),
        ("seed", "seed design"),
        ("streamfn", "streamfn"),
    ):
        ladder = rows.get(name, {}).get("ladder", {})
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


def write(rows: dict[str, Any], path: Path, picture: Path, quick: bool) -> None:
    plot(rows, picture)
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
    lines += [
        "Setup: a fake OpenAI upstream (bench/upstream.py, one write per token), each target in",
        "a process of its own on uvicorn with uvloop and httptools, and one load generator",
        "(bench/load.py) for all. The baselines: the upstream read directly; a raw Starlette",
        "relay re-emitting the upstream's bytes through one httpx client (the floor for any",
        "Python relay); the seed's design (FastAPI + sse-starlette + AsyncOpenAI, one event per",
        "token). streamfn serves its native `/chat/stream` with the OpenAI provider, resume on",
        "(every stream's events journalled to a SQLite log, as `make run` does).",
        "",
        "## Targets",
        "",
        "| target | streamfn | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, mine, base, ratio, goal, met in targets(rows):
        lines.append(f"| {name} | {mine} | {base} | {ratio} | {goal} | {'yes' if met else 'no'} |")
    lines += ["", "## Concurrency", "", f"![tokens per CPU second and delay]({picture.name})", ""]
    lines += [
        "| target | streams | complete | p99 delay over pace | tokens per CPU s | loop stall |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("upstream", "relay", "seed", "streamfn"):
        for n, rung in sorted(rows[name].get("ladder", {}).items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {name} | {int(n):,} | {rung['complete']:,} | "
                f"{_fmt(rung['gap_p99_ms'], ' ms')} | {_fmt(rung['tokens_per_cpu_s'])} | "
                f"{_fmt(rung['max_lag_ms'], ' ms')} |"
            )
    lines += [
        "",
        "The upstream's row counts wall time, not CPU (it has no probe).",
        "",
        "## Single stream and first token",
        "",
        "| target | tokens/s | TTFT p50 | 200 at once: TTFT p50 / p99 | first request's stall |",
        "|---|---|---|---|---|",
    ]
    for name in ("upstream", "relay", "seed", "streamfn"):
        r = rows[name]
        lines.append(
            f"| {name} | {_fmt(r['tokens_per_s'])} | {_fmt(r['ttft_p50_ms'], ' ms')} | "
            f"{_fmt(r['ttft200_p50_ms'], ' ms')} / {_fmt(r['ttft200_p99_ms'], ' ms')} | "
            f"{_fmt(r.get('first_use_lag_ms', math.nan), ' ms')} |"
        )
    lam = rows["lambda"]
    cold = lam["cold_start_ms"]
    lines += [
        "",
        "## Lambda path",
        "",
        "| figure | ms or us |",
        "|---|---|",
        f"| cold start, streamfn (runtime started to first body byte) | {_fmt(cold['streamfn'])} |",
        f"| cold start, a minimal httpx Runtime API loop | {_fmt(cold['minimal'])} |",
        "| SnapStart restore path (parked at the snapshot point; request to first byte: keys "
        f"read again, app rebuilt, invocation) | {_fmt(cold.get('snapstart_restore', math.nan))} |",
        f"| per token, uvicorn (echo, 2,000 tokens) | {_fmt(lam['per_token_us']['uvicorn'])} |",
        f"| per token, Lambda path | {_fmt(lam['per_token_us']['lambda'])} |",
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
    lines += ["", "## Machine", "", _machine(), ""]
    path.write_text("\n".join(lines))
