"""The load generator of `make bench`: one client for every target, cheap per byte (a bare
asyncio protocol with httptools' C parser for the HTTP framing, chunked encoding included), so
the same client cost is in every figure. It records when each token `t<i> ` arrived, which
works on every format measured (OpenAI chunks, streamfn's native events, Anthropic's Messages
events) where the token text is in exactly one event. A format that repeats the whole text at
its end (the Responses API's `response.output_text.done` and the events after it) is scanned
only until a marker its target names (`until`): past it, nothing is counted.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import httptools

_TOKEN = re.compile(rb"t(\d+) ")


@dataclass
class Result:
    sent_at: float
    status: int = 0
    tokens: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return self.times[0] - self.sent_at if self.times else None

    def exact(self, n: int) -> bool:
        return self.status == 200 and self.tokens == list(range(n))


class _Client(asyncio.Protocol):
    def __init__(
        self,
        request: bytes,
        result: Result,
        done: asyncio.Future[Result],
        until: bytes | None = None,
    ) -> None:
        self.request = request
        self.result = result
        self.done = done
        self.until = until
        self.scanning = True  # False once `until` has been seen
        self.parser = httptools.HttpResponseParser(self)
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.result.sent_at = time.perf_counter()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"parse: {exc}")

    def on_headers_complete(self) -> None:
        self.result.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.scanning:
            return
        data = self.tail + body
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        if self.until is not None and (at := data.find(self.until, 0, cut)) >= 0:
            # Whole lines only are scanned, so the marker is never split across two bodies.
            cut, self.scanning, self.tail = at, False, b""
        found = [int(m[1]) for m in _TOKEN.finditer(data, 0, cut)]
        if found:
            now = time.perf_counter()
            self.result.tokens += found
            self.result.times += [now] * len(found)

    def on_message_complete(self) -> None:
        self._finish(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None if self.done.done() else f"connection lost: {exc}")

    def _finish(self, error: str | None) -> None:
        if not self.done.done():
            self.result.error = error
            self.done.set_result(self.result)
        if self.transport is not None:
            self.transport.close()


def request(port: int, path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"accept: text/event-stream\r\ncontent-length: {len(payload)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + payload


async def one(port: int, raw: bytes, timeout_s: float = 120, until: bytes | None = None) -> Result:
    """One stream of `raw` to `port`; tokens are counted in its body until `until` (all of it
    when None)."""
    loop = asyncio.get_running_loop()
    result = Result(sent_at=time.perf_counter())
    done: asyncio.Future[Result] = loop.create_future()
    try:
        transport, _ = await loop.create_connection(
            lambda: _Client(raw, result, done, until), "127.0.0.1", port
        )
    except OSError as exc:
        result.error = f"connect: {exc}"
        return result
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout_s)
    except TimeoutError:
        result.error = "timed out"
        transport.close()
        return result


async def many(
    requests: list[tuple[int, bytes]],
    n: int,
    *,
    spread_s: float = 0,
    timeout_s: float = 120,
    until: bytes | None = None,
) -> list[Result]:
    """`n` concurrent streams, started over `spread_s` seconds; stream i sends the request
    `requests[i % len(requests)]` (a port and its request's bytes): round-robin over a fleet.
    `until` as for `one`."""

    async def started(i: int) -> Result:
        if spread_s:
            await asyncio.sleep(spread_s * i / n)
        port, raw = requests[i % len(requests)]
        return await one(port, raw, timeout_s, until)

    return await asyncio.gather(*(started(i) for i in range(n)))


async def get_json(port: int, path: str, timeout_s: float = 30) -> Any:
    """`GET path`'s JSON body, on a connection of its own, without blocking the loop (the
    probe of a server while streams run; it answers with a content-length)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n".encode()
        )
        raw = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path} on {port}: {head[:80]!r}")
    return json.loads(body)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def gaps_over_pace(results: list[Result], pace_s: float) -> list[float]:
    """Each inter-token delay less the pace: how late a token was against its predecessor."""
    out: list[float] = []
    for r in results:
        out += [b - a - pace_s for a, b in zip(r.times, r.times[1:], strict=False)]
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
