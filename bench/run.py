"""`make bench`: streamfn against its baselines, in one run on loopback; writes BENCHMARKS.md and
bench/streams.png.

Processes: the fake upstream (bench/upstream.py), one target at a time (bench/targets.py), and
this one as the load generator (bench/load.py). Every figure is compared with a baseline
measured in the same run, as a ratio or a difference: the machines are shared and noisy.
`BENCH_QUICK=1` runs smaller counts (a smoke run, not figures to report).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench import load  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
PACE = 50  # tokens per second per stream in the concurrency runs
PACED_TOKENS = 10 if QUICK else 200  # 4 s per stream at 50 tokens/s
FAST_TOKENS = 2000 if QUICK else 20000
LADDER = [1, 10, 100] if QUICK else [1, 10, 100, 1000, 2000, 5000]
MESSAGES = [{"role": "user", "content": "bench"}]


def say(line: str) -> None:
    sys.stderr.write(line + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, timeout_s: float = 30) -> None:
    ends = time.monotonic() + timeout_s
    while time.monotonic() < ends:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@contextlib.contextmanager
def process(script: str, *args: str) -> Iterator[int]:
    """`script` in a child process listening on a free port (given after the first of `args`
    for targets.py, alone for upstream.py)."""
    port = free_port()
    child = subprocess.Popen([sys.executable, script, *args[:1], str(port), *args[1:]])
    try:
        wait_ready(port)
        yield port
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


@dataclass
class Target:
    name: str
    label: str
    port: int
    path: str
    body: dict[str, Any]

    def raw(self, script: str) -> bytes:
        return load.request(self.port, self.path, {**self.body, "model": script})

    def probe(self, reset: bool = False) -> dict[str, float]:
        if self.name == "upstream":  # no probe there: its CPU is counted as wall time
            return {"cpu_s": 0.0}
        url = f"http://127.0.0.1:{self.port}/__bench" + ("?reset" if reset else "")
        return dict(httpx.get(url, timeout=30).json())


@dataclass
class Figures:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, target: str, key: str, value: Any) -> None:
        self.rows.setdefault(target, {})[key] = value


async def single_stream(target: Target, figures: Figures) -> None:
    raw = target.raw(f"fast-{FAST_TOKENS}")
    await load.one(target.port, raw)  # warm: connections, imports, first use
    runs = []
    for _ in range(3):
        r = await load.one(target.port, raw)
        assert r.exact(FAST_TOKENS), (target.name, r.status, r.error, len(r.tokens))
        runs.append(FAST_TOKENS / (r.times[-1] - r.sent_at))
    figures.set(target.name, "tokens_per_s", load.median(runs))


async def ttft(target: Target, figures: Figures) -> None:
    raw = target.raw("fast-1")
    samples = []
    for _ in range(50 if QUICK else 300):
        r = await load.one(target.port, raw)
        assert r.exact(1), (target.name, r.status, r.error)
        samples.append(r.ttft or 0)
    figures.set(target.name, "ttft_p50_ms", load.median(samples) * 1000)
    results = await load.many(target.port, target.raw("pace-50-5"), 200)
    ttfts = [r.ttft for r in results if r.ttft is not None]
    assert len(ttfts) == 200, (target.name, [r.error for r in results if r.error][:3])
    figures.set(target.name, "ttft200_p50_ms", load.percentile(ttfts, 50) * 1000)
    figures.set(target.name, "ttft200_p99_ms", load.percentile(ttfts, 99) * 1000)


async def concurrency(target: Target, figures: Figures, counts: list[int]) -> None:
    ladder: dict[str, dict[str, float]] = {}
    for n in counts:
        target.probe(reset=True)
        before = target.probe()["cpu_s"] if target.name != "upstream" else 0.0
        started = time.perf_counter()
        results = await load.many(
            target.port,
            target.raw(f"pace-{PACE}-{PACED_TOKENS}"),
            n,
            spread_s=min(2.0, n / 1000),
            timeout_s=120,  # 30 times a stream's length: beyond that it counts as broken
        )
        wall = time.perf_counter() - started
        probe = target.probe()
        exact = sum(r.exact(PACED_TOKENS) for r in results)
        gaps = load.gaps_over_pace(results, 1 / PACE)
        tokens = sum(len(r.tokens) for r in results)
        cpu = probe["cpu_s"] - before if target.name != "upstream" else wall
        ladder[str(n)] = {
            "complete": exact,
            "gap_p99_ms": load.percentile(gaps, 99) * 1000,
            "tokens_per_cpu_s": tokens / cpu if cpu > 0 else float("nan"),
            "max_lag_ms": probe.get("max_lag_ms", float("nan")),
            "errors": len([r for r in results if not r.exact(PACED_TOKENS)]),
        }
        say(f"  {target.name} {n} streams: {ladder[str(n)]}")
    figures.set(target.name, "ladder", ladder)


async def idle_memory(target: Target, figures: Figures, n: int) -> None:
    """Resident memory per open stream that has had its first token and waits."""
    base = target.probe()["rss_kib"]
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(n):
        result = load.Result(sent_at=0)
        done: asyncio.Future[load.Result] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda result=result, done=done: load._Client(target.raw("idle-1"), result, done),
            "127.0.0.1",
            target.port,
        )
        clients.append((transport, result))
    for _ in range(100):
        if all(r.tokens for _, r in clients):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    rss = target.probe()["rss_kib"]
    figures.set(target.name, "idle_kib_per_stream", (rss - base) / n)
    for transport, _ in clients:
        transport.close()


TARGETS = {
    "upstream": ("the upstream read directly", "/v1/chat/completions", {"stream": True}),
    "relay": ("raw Starlette relay", "/v1/chat/completions", {"stream": True}),
    "seed": ("seed design", "/chat/stream", {}),
    "streamfn": ("streamfn (uvicorn)", "/chat/stream", {"provider": "openai"}),
}
# How far up the ladder each target goes: the upstream alone is the client's and upstream's
# own ceiling; the seed design is only a reference for the lower rungs.
CEILING = {"upstream": 1000, "relay": 2000, "seed": 2000, "streamfn": 5000}


async def first_use(target: Target, figures: Figures) -> None:
    """The loop's longest lag over a fresh process's first request (any SDK import, first
    connection). Start-up, before the server takes requests, is not counted."""
    target.probe(reset=True)
    r = await load.one(target.port, target.raw("fast-10"))
    assert r.exact(10), (target.name, r.status, r.error)
    figures.set(target.name, "first_use_lag_ms", target.probe()["max_lag_ms"])


async def measure(figures: Figures, upstream_port: int) -> None:
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    for name, (label, path, extra) in TARGETS.items():
        say(label)
        body = {"messages": MESSAGES, **extra}
        with contextlib.ExitStack() as stack:
            if name == "upstream":
                port = upstream_port
            else:
                port = stack.enter_context(process(str(HERE / "targets.py"), name, upstream_url))
            target = Target(name, label, port, path, body)
            if name != "upstream":
                await first_use(target, figures)
            await single_stream(target, figures)
            await ttft(target, figures)
            await concurrency(target, figures, [n for n in LADDER if n <= CEILING[name]])
        if name in ("relay", "streamfn"):
            with process(str(HERE / "targets.py"), name, upstream_url) as port:
                target = Target(name, label, port, path, body)
                await load.one(port, target.raw("fast-10"))  # the first use, done
                await idle_memory(target, figures, 100 if QUICK else 1000)


def lambda_figures(figures: Figures) -> None:
    from bench import lambda_path

    say("the Lambda path")
    streamfn = [lambda_path.cold_start() for _ in range(5)]
    minimal = [lambda_path.cold_start(lambda_path.MINIMAL) for _ in range(5)]
    restored = [lambda_path.restore_start() for _ in range(5)]
    uvicorn_s, lambda_s = lambda_path.per_token()
    figures.set(
        "lambda",
        "cold_start_ms",
        {
            "streamfn": load.median(streamfn) * 1000,
            "minimal": load.median(minimal) * 1000,
            "snapstart_restore": load.median(restored) * 1000,
        },
    )
    figures.set("lambda", "per_token_us", {"uvicorn": uvicorn_s * 1e6, "lambda": lambda_s * 1e6})
    figures.set(
        "lambda",
        "imports_ms",
        {
            "app": lambda_path.import_times(
                "import streamfn.awslambda.runtime, streamfn.app; streamfn.app.create_app()"
            ),
            "openai": lambda_path.import_times("import streamfn.providers.openai_chat"),
            "anthropic": lambda_path.import_times("import streamfn.providers.anthropic_messages"),
            "ollama": lambda_path.import_times("import streamfn.providers.ollama_chat"),
        },
    )


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    figures = Figures()
    with process(str(HERE / "upstream.py")) as upstream_port:
        uvloop.run(measure(figures, upstream_port))
    lambda_figures(figures)
    (HERE / "results.json").write_text(json.dumps(figures.rows, indent=1) + "\n")
    from bench import report

    report.write(figures.rows, ROOT / "BENCHMARKS.md", HERE / "streams.png", QUICK)
    say(f"BENCHMARKS.md written in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
