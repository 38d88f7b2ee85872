"""`make bench`'s `lmi` row (issue #23): N concurrent streams in ONE Lambda runtime process, as
Lambda Managed Instances run it (`AWS_LAMBDA_MAX_CONCURRENCY=N`: one event loop, N invocation
loops), at N = 1, 64, 256 and 512.

Each rung starts `functions/bootstrap` afresh with N slots against bench's own Runtime API
(bench/runtime_api.py, which says why not the emulator), serving streamfn's app with the OpenAI
provider against bench's fake upstream, configured as template.yaml configures the function but
for the AWS services (no DynamoDB tables: no stream log, no usage records, no keys, auth none).
Once every slot waits in `next` and one stream has been served (the SDK imported, the client
made: once per process), N invocations of `pace-50-200` (200 tokens at 50 a second, paced as
the concurrency rows are) arrive over N/1000 s, as the ladder's streams do, and:

- first token: from the invocation queued (a slot waits for it) to its first token read back;
  p50 and p99. The upstream read directly at the same N, in the same rung, is the floor.
- resident memory per stream: the runtime process's RSS (/proc/PID/status) when all N have had
  their first token and none has ended, less its RSS before, over N; and its highest while they
  ran, the same way (the goal takes the higher).
- CPU per token: the process's CPU time (utime + stime, its threads' too) over the rung, over
  the tokens read back.
- every stream complete and exact: all 200 tokens, in order, status 200, no error trailers.

The runtime runs on this interpreter's packages (the dev venv), not the layer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench import load, servers
from bench.goals import Row, fmt
from bench.measures import PACE, PACED_TOKENS, QUICK, Figures, Target, say
from bench.runtime_api import Invocation, RuntimeAPI, chat_event

ROOT = Path(__file__).parents[1]
BOOTSTRAP = ROOT / "functions" / "bootstrap"
LADDER = [1, 64] if QUICK else [1, 64, 256, 512]
TARGET = 512  # the issue's: 512 streams in one process

# Of the environment the benchmark leaves to the runtime, what would configure another
# provider or a part of streamfn the row does not measure.
_DROPPED = ("OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "AWS_", "OTEL_", "STREAMFN_")


def runtime_env(api_port: int, slots: int, upstream_url: str) -> dict[str, str]:
    """The runtime's environment: Lambda's variables (a Managed Instances environment of 2048
    MB, as template.yaml makes it) and the function's, for the OpenAI provider."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
    return env | {
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api_port}",
        "AWS_LAMBDA_MAX_CONCURRENCY": str(slots),
        "AWS_LAMBDA_FUNCTION_NAME": "streamfn-bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "lambda-managed-instances",
        "AWS_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(BOOTSTRAP.parent),
        "POWERTOOLS_SERVICE_NAME": "streamfn",
        "OPENAI_BASE_URL": upstream_url,
        "OPENAI_API_KEY": "bench",
        "STREAMFN_DEFAULT_PROVIDER": "openai",
        "STREAMFN_AUTH": "none",
        "STREAMFN_USAGE_RECORDS": "false",
    }


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _cpu_s(pid: int) -> float:
    """utime + stime of the process and all its threads (/proc/PID/stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.asynccontextmanager
async def runtime(
    slots: int, upstream_url: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[RuntimeAPI, int]]:
    """A runtime process with `slots` invocation loops (`env` added to its environment), once
    every one waits in `next`: its Runtime API and its pid. Its output (JSON log lines, EMF)
    goes to a file, shown if it dies."""
    api = RuntimeAPI()
    await api.start()
    with tempfile.TemporaryFile(prefix="streamfn-bench-lmi-") as log:
        child = await asyncio.create_subprocess_exec(
            str(BOOTSTRAP),
            sys.executable,  # the exec wrapper's first argument: the interpreter
            env=runtime_env(api.port, slots, upstream_url) | (env or {}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await api.until_waiting(slots, 120, alive=lambda: child.returncode is None)
            yield api, child.pid
        except BaseException:
            log.seek(0)
            say(log.read()[-3000:].decode(errors="replace"))
            raise
        finally:
            if child.returncode is None:
                child.terminate()  # SIGTERM: the waiting `next`s dropped, the process ends
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
            await api.stop()


async def _open_rss(
    pid: int, invocations: list[Invocation], n: int, stop: asyncio.Event
) -> tuple[int | None, int]:
    """The runtime's RSS once all n invocations have had a first token and none has ended
    (None if that never held), and its highest; sampled every 50 ms until `stop`."""
    at_open: int | None = None
    peak = 0
    while not stop.is_set():
        rss = _rss_kib(pid)
        peak = max(peak, rss)
        if (
            at_open is None
            and len(invocations) == n
            and all(i.result.times and not i.ended for i in invocations)
        ):
            at_open = rss
        await asyncio.sleep(0.05)
    return at_open, peak


async def _stream(api: RuntimeAPI, event: bytes, invocations: list[Invocation]) -> load.Result:
    invocation = api.invoke(event)
    invocations.append(invocation)
    try:
        return await asyncio.wait_for(asyncio.shield(invocation.done), 120)
    except TimeoutError:
        invocation.result.error = "timed out"  # 30 times the stream's length: broken
        return invocation.result


async def rung(n: int, upstream_url: str) -> dict[str, Any]:
    """n streams in a runtime process of n slots."""
    script = f"pace-{PACE}-{PACED_TOKENS}"
    body = {"messages": [{"role": "user", "content": "bench"}], "provider": "openai"}
    spread_s = n / 1000  # as the concurrency rows start theirs (bench/measures.py)
    async with runtime(n, upstream_url) as (api, pid):
        idle_kib = _rss_kib(pid)  # after init, every slot waiting
        first = await _stream(api, chat_event("/chat/stream", {**body, "model": "fast-10"}), [])
        assert first.exact(10), (first.status, first.error, first.tokens)
        await api.until_waiting(n, 30)  # its slot back in `next`
        await asyncio.sleep(0.5)
        before_kib, before_cpu, own_before = _rss_kib(pid), _cpu_s(pid), _own_cpu_s()
        event = chat_event("/chat/stream", {**body, "model": script})
        invocations: list[Invocation] = []

        async def arrive(i: int) -> load.Result:
            await asyncio.sleep(spread_s * i / n)
            return await _stream(api, event, invocations)

        stop = asyncio.Event()
        sampler = asyncio.ensure_future(_open_rss(pid, invocations, n, stop))
        started = time.perf_counter()
        results = await asyncio.gather(*(arrive(i) for i in range(n)))
        wall = time.perf_counter() - started
        stop.set()
        at_open, peak = await sampler
        cpu, own = _cpu_s(pid) - before_cpu, _own_cpu_s() - own_before
        echoed = sum(i.echoed == i.invocation_id for i in invocations)
    tokens = sum(len(r.tokens) for r in results)
    return {
        **_streams(results, n),
        "invocation_id_echoed": echoed,
        "idle_rss_kib": idle_kib,
        "rss_before_kib": before_kib,
        "kib_per_stream_open": (at_open - before_kib) / n if at_open is not None else None,
        "kib_per_stream_peak": (peak - before_kib) / n,
        "cpu_s": cpu,
        "cpu_us_per_token": cpu / tokens * 1e6 if tokens else float("nan"),
        "cpu_share": cpu / wall,  # of one core, over the rung
        "harness_cpu_s": own,  # this process's: the Runtime API side and the scan
        "wall_s": wall,
    }


def _streams(results: list[load.Result], n: int) -> dict[str, Any]:
    """What n streams' results say of them: complete and exact, first token, the pace kept."""
    ttfts = [r.ttft for r in results if r.ttft is not None]
    failed = [r for r in results if not r.exact(PACED_TOKENS)]
    why = {r.error or f"status {r.status}, {len(r.tokens)} tokens" for r in failed}
    return {
        "complete": n - len(failed),
        "errors": sorted(why)[:3],
        "ttft_p50_ms": load.percentile(ttfts, 50) * 1000,
        "ttft_p99_ms": load.percentile(ttfts, 99) * 1000,
        "gap_p99_ms": load.percentile(load.gaps_over_pace(results, 1 / PACE), 99) * 1000,
        "tokens": sum(len(r.tokens) for r in results),
    }


async def served(n: int, target: Target) -> dict[str, Any]:
    """n streams to a server (the same app on uvicorn, or the upstream read directly), started
    as the runtime's are: the same figures, its CPU and memory from its probe."""
    base = target.probe(reset=True) if target.probed else {}
    peak = base.get("rss_kib", 0)
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            with contextlib.suppress(OSError, TimeoutError, RuntimeError, ValueError):
                peak = max(peak, (await target.probe_async())["rss_kib"])
            await asyncio.sleep(0.1)

    sampler = asyncio.ensure_future(sample()) if target.probed else None
    script = f"pace-{PACE}-{PACED_TOKENS}"
    results = await load.many(target.requests(script), n, spread_s=n / 1000, timeout_s=120)
    out = _streams(results, n)
    if sampler is not None:
        stop.set()
        await sampler
        cpu = target.probe()["cpu_s"] - base["cpu_s"]
        out["kib_per_stream_peak"] = (peak - base["rss_kib"]) / n
        out["cpu_us_per_token"] = cpu / out["tokens"] * 1e6 if out["tokens"] else float("nan")
    return out


async def measure(figures: Figures, upstream: tuple[int, str]) -> None:
    """The ladder; at each rung, the runtime's figures, then the same app on uvicorn (as `make
    run` serves it: bench/targets.py's `streamfn`, stream log on, a fresh process) and the
    upstream read directly, given the same streams."""
    say("N streams in one Lambda runtime process (Managed Instances)")
    upstream_port, upstream_url = upstream
    body = {"messages": [{"role": "user", "content": "bench"}], "provider": "openai"}
    direct = Target("upstream", "", [upstream_port], "/v1/chat/completions", {"stream": True})
    ladder: dict[str, dict[str, Any]] = {}
    command = [str(ROOT / "bench" / "targets.py"), "streamfn", servers.PORT, upstream_url]
    for n in LADDER:
        step = await rung(n, upstream_url)
        # A fresh server for each rung too: memory a process has grown to for one rung is
        # not grown again for the next, and would hide its cost there.
        with servers.process(command) as port:
            uvicorn = Target("streamfn", "", [port], "/chat/stream", body)
            await load.one(port, uvicorn.raw("fast-10"))  # its first use, done
            await asyncio.sleep(0.5)  # as the runtime is left before its rung
            step["uvicorn"] = await served(n, uvicorn)
        step["upstream"] = await served(n, direct)
        ladder[str(n)] = step
        say(f"  lmi {n} streams: {step}")
    figures.set("lmi", "ladder", ladder)
    figures.set("lmi", "tokens", PACED_TOKENS)


# --- what BENCHMARKS.md says of it ----------------------------------------------------------


def top(rows: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """The rung the goals are read at: TARGET, or the most streams a quick run went to."""
    ladder = rows.get("lmi", {}).get("ladder", {})
    if not ladder:
        return None
    n = TARGET if str(TARGET) in ladder else max(int(k) for k in ladder)
    return n, ladder[str(n)]


def kib_per_stream(step: dict[str, Any]) -> float:
    """The higher of the two readings: all n open, and the highest while they ran."""
    return max(step["kib_per_stream_open"] or 0.0, step["kib_per_stream_peak"])


def goals(rows: dict[str, Any]) -> list[Row]:
    """Issue 23's: 512 concurrent streams in one runtime process complete and exact, first token
    p99 under 1 s on this 2-core machine, under 100 KiB resident per stream; CPU per token with
    no goal, beside the same app on uvicorn given the same streams."""
    found = top(rows)
    if found is None:
        return [("Lambda Managed Instances: not measured", "", "", "", "", "skipped")]
    n, step = found
    uv, up = step["uvicorn"], step["upstream"]
    kib = kib_per_stream(step)
    where = f"{n:,} streams in one runtime process"
    return [
        (
            f"LMI: {where}, complete and exact",
            f"{step['complete']:,}",
            f"uvicorn {uv['complete']:,}",
            "",
            f"{n:,}",
            step["complete"] == n,
        ),
        (
            f"LMI: first token p99, {where}",
            fmt(step["ttft_p99_ms"], " ms"),
            f"upstream alone {fmt(up['ttft_p99_ms'], ' ms')}; uvicorn "
            f"{fmt(uv['ttft_p99_ms'], ' ms')}",
            f"{step['ttft_p99_ms'] / uv['ttft_p99_ms']:.2f}x uvicorn's",
            "< 1,000 ms",
            step["ttft_p99_ms"] < 1000,
        ),
        (
            f"LMI: resident memory per stream, {where}",
            fmt(kib, " KiB"),
            f"uvicorn {fmt(uv['kib_per_stream_peak'], ' KiB')}",
            f"{kib / uv['kib_per_stream_peak']:.2f}x" if uv["kib_per_stream_peak"] > 0 else "",
            "< 100 KiB",
            kib < 100,
        ),
        (
            f"LMI: CPU per token, {where}",
            fmt(step["cpu_us_per_token"], " us"),
            f"uvicorn {fmt(uv['cpu_us_per_token'], ' us')}",
            f"{step['cpu_us_per_token'] / uv['cpu_us_per_token']:.2f}x",
            "none set",
            "-",
        ),
    ]


def section(rows: dict[str, Any]) -> list[str]:
    ladder = rows.get("lmi", {}).get("ladder", {})
    lines = ["", "## N streams in one Lambda runtime process (Managed Instances)", ""]
    if not ladder:
        return [*lines, "Not measured."]
    tokens = rows["lmi"].get("tokens", PACED_TOKENS)
    lines += [
        "`functions/bootstrap` with `AWS_LAMBDA_MAX_CONCURRENCY=N` (one process, one event",
        "loop, N invocation loops) serving streamfn's app with the OpenAI provider, against",
        "bench's own Runtime API (bench/runtime_api.py); a fresh process for each N. N streams",
        f"of {tokens} tokens at 50 a second arrive over N/1000 s. Configured as template.yaml",
        "configures the function but for the AWS services: no DynamoDB stream log, usage",
        "records or keys (auth none). `uvicorn` is the same app as `make run` serves it (stream",
        "log on, in SQLite), given the same streams in the same rung; `upstream` the fake",
        "upstream read directly. Memory per stream: the process's RSS growth over N, when all N",
        "had their first token and none had ended / at its highest while they ran.",
        "",
        "| streams | complete | first token p50 / p99 | p99: upstream / uvicorn | KiB per "
        "stream (all open / peak) | uvicorn KiB | CPU per token | uvicorn | core used | "
        "idle RSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, step in sorted(ladder.items(), key=lambda kv: int(kv[0])):
        uv, up = step["uvicorn"], step["upstream"]
        opened = step["kib_per_stream_open"]
        lines.append(
            f"| {int(n):,} | {step['complete']:,} | {fmt(step['ttft_p50_ms'], ' ms')} / "
            f"{fmt(step['ttft_p99_ms'], ' ms')} | {fmt(up['ttft_p99_ms'], ' ms')} / "
            f"{fmt(uv['ttft_p99_ms'], ' ms')} | "
            f"{fmt(opened, '') if opened is not None else 'n/a'} / "
            f"{fmt(step['kib_per_stream_peak'])} | {fmt(uv['kib_per_stream_peak'])} | "
            f"{fmt(step['cpu_us_per_token'], ' us')} | {fmt(uv['cpu_us_per_token'], ' us')} | "
            f"{step['cpu_share']:.0%} | {step['idle_rss_kib'] / 1024:.0f} MiB |"
        )
    errors = sorted({e for step in ladder.values() for e in step["errors"]})
    harness = max(step["harness_cpu_s"] / step["wall_s"] for step in ladder.values())
    lines += [
        "",
        "Core used: the runtime process's CPU time over the rung's wall time (100%: its one",
        "event loop saturated). Idle RSS: after init, every slot waiting. The Runtime API side",
        f"used at most {harness:.0%} of a core. The runtime ran on the dev venv's packages.",
    ]
    if errors:
        lines.append(f"Streams not exact: {'; '.join(errors[:3])}.")
    return lines
