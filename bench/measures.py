"""How `make bench` measures one target (a server, or a fleet of them): a fast stream's rate,
time to first token, concurrent paced streams (CPU per token, delay over the pace, the loop's
longest stall, the thread count before, during and after), resident memory per idle stream.
bench/run.py says which targets, against which upstreams.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import load

QUICK = os.environ.get("BENCH_QUICK") == "1"
PACE = 50  # tokens per second per stream in the concurrency runs
PACED_TOKENS = 10 if QUICK else 200  # 4 s per stream at 50 tokens/s
FAST_TOKENS = 2000 if QUICK else 20000


def say(line: str) -> None:
    sys.stderr.write(line + "\n")


class Skipped(Exception):
    """A target that cannot be measured here; `str` says why, and goes into BENCHMARKS.md."""


@dataclass
class Target:
    """A target: one server, or a fleet of them (`ports`) that streams are spread over.
    `until`: where its streams' token scan stops (bench/load.py), for a format that repeats
    the text at its end."""

    name: str
    label: str
    ports: list[int]
    path: str
    body: dict[str, Any]
    until: bytes | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def probed(self) -> bool:
        return self.name != "upstream"  # no probe there: its CPU is counted as wall time

    def raw(self, script: str, port: int | None = None) -> bytes:
        return load.request(port or self.port, self.path, {**self.body, "model": script})

    def requests(self, script: str) -> list[tuple[int, bytes]]:
        """The request for `script` to each server, in the order streams go round them."""
        return [(port, self.raw(script, port)) for port in self.ports]

    def probe(self, reset: bool = False) -> dict[str, float]:
        """The probe's figures, summed over the servers (the longest loop stall: the longest)."""
        if not self.probed:
            return {"cpu_s": 0.0}
        query = "?reset" if reset else ""
        return _summed(
            [
                # A server still closing thousands of streams may take a while to answer.
                httpx.get(f"http://127.0.0.1:{port}/__bench{query}", timeout=180).json()
                for port in self.ports
            ]
        )

    async def probe_async(self) -> dict[str, float]:
        """`probe`, without blocking the load generator: while streams run."""
        return _summed([await load.get_json(port, "/__bench") for port in self.ports])


def _summed(probes: list[dict[str, float]]) -> dict[str, float]:
    out = {key: sum(p[key] for p in probes) for key in probes[0]}
    out["max_lag_ms"] = max(p["max_lag_ms"] for p in probes)
    out["max_gc_ms"] = max(p["max_gc_ms"] for p in probes)
    return out


@dataclass
class Figures:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, target: str, key: str, value: Any) -> None:
        self.rows.setdefault(target, {})[key] = value


async def single_stream(target: Target, figures: Figures) -> None:
    raw = target.raw(f"fast-{FAST_TOKENS}")
    await load.one(target.port, raw, until=target.until)  # warm: connections, imports, first use
    runs = []
    for _ in range(3):
        r = await load.one(target.port, raw, until=target.until)
        assert r.exact(FAST_TOKENS), (target.name, r.status, r.error, len(r.tokens))
        runs.append(FAST_TOKENS / (r.times[-1] - r.sent_at))
    figures.set(target.name, "tokens_per_s", load.median(runs))


async def _first_token_p50_ms(target: Target) -> float:
    """Time to first token, p50, of fresh requests one at a time (round the servers)."""
    requests = target.requests("fast-1")
    samples = []
    for i in range(50 if QUICK else 300):
        port, raw = requests[i % len(requests)]
        r = await load.one(port, raw, until=target.until)
        assert r.exact(1), (target.name, r.status, r.error)
        samples.append(r.ttft or 0)
    return load.median(samples) * 1000


async def ttft(target: Target, figures: Figures) -> None:
    figures.set(target.name, "ttft_p50_ms", await _first_token_p50_ms(target))
    results = await load.many(target.requests("pace-50-5"), 200, until=target.until)
    ttfts = [r.ttft for r in results if r.ttft is not None]
    assert len(ttfts) == 200, (target.name, [r.error for r in results if r.error][:3])
    figures.set(target.name, "ttft200_p50_ms", load.percentile(ttfts, 50) * 1000)
    figures.set(target.name, "ttft200_p99_ms", load.percentile(ttfts, 99) * 1000)


async def _sample_threads(target: Target, seen: list[float], stop: asyncio.Event) -> None:
    """The servers' thread count, every 0.1 s until `stop` is set. Not cancelled: on Python
    3.11, a cancel that lands as get_json's `wait_for` completes is lost
    (https://github.com/python/cpython/issues/86296), and the run then waited on the sampler
    for ever."""
    while not stop.is_set():
        try:
            seen.append((await target.probe_async())["threads"])
        except (OSError, TimeoutError, RuntimeError, ValueError) as exc:
            # A server too busy to answer in time misses a sample; the run goes on.
            say(f"  {target.name}: a thread sample missed ({type(exc).__name__})")
        await asyncio.sleep(0.1)


async def concurrency(target: Target, figures: Figures, counts: list[int]) -> None:
    ladder: dict[str, dict[str, Any]] = dict(figures.rows.get(target.name, {}).get("ladder", {}))
    for n in counts:
        target.probe(reset=True)
        before = target.probe()
        seen: list[float] = []
        stop = asyncio.Event()
        sampler = (
            asyncio.create_task(_sample_threads(target, seen, stop)) if target.probed else None
        )
        started = time.perf_counter()
        results = await load.many(
            target.requests(f"pace-{PACE}-{PACED_TOKENS}"),
            n,
            spread_s=min(2.0, n / 1000),
            timeout_s=120,  # 30 times a stream's length: beyond that it counts as broken
            until=target.until,
        )
        wall = time.perf_counter() - started
        if sampler is not None:
            stop.set()
            await sampler
        probe = target.probe()
        exact = sum(r.exact(PACED_TOKENS) for r in results)
        gaps = load.gaps_over_pace(results, 1 / PACE)
        tokens = sum(len(r.tokens) for r in results)
        cpu = probe["cpu_s"] - before["cpu_s"] if target.probed else wall
        ladder[str(n)] = {
            "complete": exact,
            "gap_p99_ms": load.percentile(gaps, 99) * 1000,
            "tokens_per_cpu_s": tokens / cpu if cpu > 0 else float("nan"),
            "max_lag_ms": probe.get("max_lag_ms", float("nan")),
            "max_gc_ms": probe.get("max_gc_ms", float("nan")),
            "errors": len([r for r in results if not r.exact(PACED_TOKENS)]),
            "tokens": tokens,
            "cpu_s": cpu,
        }
        if target.probed:  # before, the most while they ran, after
            ladder[str(n)]["threads"] = [
                before["threads"],
                max([before["threads"], *seen]),
                probe["threads"],
            ]
        say(f"  {target.name} {n} streams: {ladder[str(n)]}")
    figures.set(target.name, "ladder", ladder)


async def idle_memory(target: Target, figures: Figures, n: int) -> None:
    """Resident memory per open stream that has had its first token and waits."""
    base = target.probe()["rss_kib"]
    loop = asyncio.get_running_loop()
    raw = target.raw("idle-1")
    clients = []
    for _ in range(n):
        result = load.Result(sent_at=0)
        done: asyncio.Future[load.Result] = loop.create_future()
        transport, _ = await loop.create_connection(
            functools.partial(load._Client, raw, result, done, target.until),
            "127.0.0.1",
            target.port,
        )
        clients.append((transport, result, done))
    for _ in range(100):
        if all(r.tokens or done.done() for _, r, done in clients):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    rss = target.probe()["rss_kib"]
    failed = [r for _, r, _ in clients if not r.tokens]
    if failed:
        figures.set(
            target.name,
            "idle_problem",
            f"{len(failed)} of {n} idle streams had no first token (status {failed[0].status}, "
            f"{failed[0].error or 'answered'}): the upstream must serve `idle-1` (one token, "
            "then nothing until the client goes)",
        )
        say(f"  idle memory not measured: {figures.rows[target.name]['idle_problem']}")
    else:
        figures.set(target.name, "idle_kib_per_stream", (rss - base) / n)
        await with_streams_open(target, figures)
    for transport, _, _ in clients:
        transport.close()


async def with_streams_open(target: Target, figures: Figures) -> None:
    """Time to first token, one fresh request at a time, while the idle streams stay open; the
    loop's longest stall and longest collection meanwhile."""
    target.probe(reset=True)
    open_ttft_ms = await _first_token_p50_ms(target)
    probe = target.probe()
    figures.set(target.name, "open_ttft_p50_ms", open_ttft_ms)
    figures.set(target.name, "open_max_lag_ms", probe["max_lag_ms"])
    figures.set(target.name, "open_max_gc_ms", probe["max_gc_ms"])


async def first_use(target: Target, figures: Figures, optional: bool) -> None:
    """The loop's longest lag over a fresh process's first request (any SDK import, first
    connection). Start-up, before the server takes requests, is not counted. An optional
    target whose first stream is not exact is skipped."""
    target.probe(reset=True)
    r = await load.one(target.port, target.raw("fast-10"), until=target.until)
    if optional and not r.exact(10):
        raise Skipped(
            f"a fast-10 stream through it was not exact: status {r.status}, "
            f"{len(r.tokens)} of 10 tokens, {r.error or 'no transport error'}"
        )
    assert r.exact(10), (target.name, r.status, r.error)
    figures.set(target.name, "first_use_lag_ms", target.probe()["max_lag_ms"])
