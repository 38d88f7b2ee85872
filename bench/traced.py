"""`make bench`'s `traced` target (issue #26): the `streamfn` target with OpenTelemetry on, a
trace per request and the GenAI metrics exported over OTLP/HTTP to a receiver on loopback, so
that what tracing costs is the difference between the two in the same run: the time to first
token it adds and its CPU per token.

The receiver is the tests' (tests/fakes/otlp.py), run as its own process (`python -m
tests.fakes.otlp PORT`: it keeps counts only, answers them at `GET /count`), which imports
opentelemetry-proto and the standard library, not pytest. It decodes every export as a
collector would; its CPU is its own, not the target's. The target sets nothing but
OTEL_EXPORTER_OTLP_ENDPOINT, as docs/observability/opentelemetry.md says to: the SDK's defaults
for the rest (every trace sampled, spans batched every 5 s, metrics exported every 60 s).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from bench import servers
from bench.goals import Row, common_rung, fmt, rung

TARGET = "traced"
BASELINE = "streamfn"


@dataclass(frozen=True)
class Collector:
    port: int

    @property
    def env(self) -> dict[str, str]:
        """What the target is given: the standard variable, and nothing else of OTEL_."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}"}

    def counts(self) -> dict[str, int]:
        """Spans and metric exports received, once the spans still batched have gone (the
        batch processor's schedule delay, OTEL_BSP_SCHEDULE_DELAY, is 5 s by default)."""
        time.sleep(6)
        return dict(httpx.get(f"http://127.0.0.1:{self.port}/count", timeout=30).json())


@contextlib.contextmanager
def collector() -> Iterator[Collector]:
    with servers.process(["-m", "tests.fakes.otlp", servers.PORT]) as port:
        yield Collector(port)


def goals(rows: dict[str, Any]) -> list[Row]:
    """Tracing on against off, the same app, upstream and run: time to first token (p50, one
    stream at a time) at most 1 ms more, CPU per token at most 1.15x."""
    mine, base = rows.get(TARGET, {}), rows.get(BASELINE, {})
    if "ttft_p50_ms" not in mine or "ttft_p50_ms" not in base:
        why = mine.get("skipped", "tracing on or off not measured")
        return [("OpenTelemetry tracing on (OTLP): not measured", why, "", "", "", "skipped")]
    added = mine["ttft_p50_ms"] - base["ttft_p50_ms"]
    out: list[Row] = [
        (
            "OpenTelemetry on (OTLP to loopback): added time to first token, p50, one stream",
            fmt(mine["ttft_p50_ms"], " ms"),
            f"tracing off {fmt(base['ttft_p50_ms'], ' ms')}",
            f"{added:+.2f} ms",
            "<= +1 ms",
            added <= 1,
        )
    ]
    n = common_rung(rows, TARGET, BASELINE)
    if n is not None:
        r, o = rung(rows, TARGET, n), rung(rows, BASELINE, n)
        cost = o["tokens_per_cpu_s"] / r["tokens_per_cpu_s"]
        out.append(
            (
                f"OpenTelemetry on: CPU per token, {n:,} streams (tokens per CPU second)",
                fmt(r["tokens_per_cpu_s"]),
                f"tracing off {fmt(o['tokens_per_cpu_s'])}",
                f"{cost:.2f}x",
                "<= 1.15x",
                cost <= 1.15,
            )
        )
    if "exported" in mine:
        exported = mine["exported"]
        out.append(
            (
                "OpenTelemetry on: what the receiver decoded over the run",
                f"{exported['spans']:,} spans, {exported['metric_exports']:,} metric exports",
                "",
                "",
                "none set",
                "-",
            )
        )
    return out
