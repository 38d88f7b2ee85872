"""The Lambda Runtime API side of `make bench`'s `lmi` row (bench/lmi.py): it hands one runtime
process its invocations and reads what it streams back, counting each token as bench/load.py
does for a server.

Not local/lambda_emulator.py, for what is measured: the emulator parses every chunk with h11
(pure Python) and relays it through a uvicorn function URL to an HTTP client, work of the same
order as the runtime's own, on the same two shared cores; its cost would be in every first-token
figure. This is the cheapest Runtime API that keeps the contract the runtime relies on (a bare
asyncio protocol with httptools' C parser, chunked bodies and trailers included): `next` long
polls answered with a function URL event, streamed responses (prelude, eight NUL bytes, body,
error trailers) and error documents answered 202. The runtime's CPU and memory are read from its
own process, so nothing of this side is in them. The emulator checks the contract in full
(tests/awslambda/test_concurrent_runtime.py runs the concurrent mode against it).

https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httptools

from bench import load
from local.emulated import API, DELIMITER, function_url_event

NEXT = f"{API}/invocation/next".encode()
ERROR_TYPE = b"lambda-runtime-function-error-type"
ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n"
ACCEPTED += b'{"status":"OK"}'


@dataclass
class Invocation:
    """One invocation: its event, and what came back (`result`, as bench/load.py's client
    records a stream: its first token's time less `result.sent_at`, when it was queued)."""

    event: bytes
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    result: load.Result = field(default_factory=lambda: load.Result(sent_at=0.0))
    done: asyncio.Future[load.Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    echoed: str | None = None  # the Lambda-Runtime-Invocation-Id its response came with

    @property
    def ended(self) -> bool:
        return self.done.done()


def chat_event(path: str, body: dict[str, Any]) -> bytes:
    """A function URL event (payload 2.0) of `POST path` with this JSON body."""
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"accept", b"text/event-stream")]
    event = function_url_event("POST", path, b"", headers, payload, "127.0.0.1", "bench.local")
    return json.dumps(event).encode()


class RuntimeAPI:
    """The Runtime API one runtime process talks to: `invoke` queues an invocation, which the
    first `next` waiting takes."""

    def __init__(self) -> None:
        self.pending: asyncio.Queue[Invocation] = asyncio.Queue()
        self.by_id: dict[str, Invocation] = {}
        self.waiting = 0  # `next`s waiting for an invocation
        self.problems: list[str] = []  # what the runtime sent that it should not have
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), "127.0.0.1", 0, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def invoke(self, event: bytes) -> Invocation:
        invocation = Invocation(event)
        invocation.result.sent_at = time.perf_counter()
        self.by_id[invocation.request_id] = invocation
        self.pending.put_nowait(invocation)
        return invocation

    async def until_waiting(self, n: int, timeout_s: float, alive: Any = None) -> None:
        """Until `n` `next`s wait at once (every slot idle); `alive()` false: the runtime died."""
        ends = time.monotonic() + timeout_s
        while self.waiting < n:
            if alive is not None and not alive():
                raise RuntimeError(f"the runtime exited with {n - self.waiting} slots not asked")
            if time.monotonic() > ends:
                raise TimeoutError(f"{self.waiting} of {n} slots waiting after {timeout_s:.0f} s")
            await asyncio.sleep(0.02)


class _Connection(asyncio.Protocol):
    """One of the runtime's Runtime API calls (it opens a connection for each)."""

    def __init__(self, api: RuntimeAPI) -> None:
        self.api = api
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.invocation: Invocation | None = None
        self.error_document = False  # POST .../error: the body is a document, not a stream
        self.head = b""  # the response's body up to the end of its prelude
        self.prelude_seen = False
        self.tail = b""  # an unfinished line of the body
        self.waiter: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.api.problems.append(f"malformed HTTP from the runtime: {exc}")
            self._close()

    def connection_lost(self, _exc: Exception | None) -> None:
        if self.waiter is not None:
            self.waiter.cancel()  # a `next` the runtime dropped (it is stopping)
        if self.invocation is not None:
            self._finish("connection lost mid-response")

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        method, url = self.parser.get_method(), self.url
        if method == b"GET" and url == NEXT:
            self.waiter = asyncio.get_running_loop().create_task(self._next())
            return
        parts = url.decode().removeprefix(f"{API}/invocation/").split("/")
        invocation = self.api.by_id.get(parts[0]) if len(parts) == 2 else None
        if method != b"POST" or invocation is None or parts[1] not in ("response", "error"):
            self.api.problems.append(f"unexpected Runtime API call {method!r} {url!r}")
            return
        self.invocation = invocation
        invocation.echoed = self.headers.get(b"lambda-runtime-invocation-id", b"").decode()
        self.error_document = parts[1] == "error"
        self.headers = {}  # any header from here on is a trailer

    def on_body(self, body: bytes) -> None:
        invocation = self.invocation
        if invocation is None:
            return
        if self.error_document:
            self.head += body
            return
        if not self.prelude_seen:
            self.head += body
            at = self.head.find(DELIMITER)
            if at < 0:
                return
            self.prelude_seen = True
            invocation.result.status = int(json.loads(self.head[:at]).get("statusCode", 0))
            body, self.head = self.head[at + len(DELIMITER) :], b""
        # As bench/load.py's client: whole lines only, so that no token is split in two.
        data = self.tail + body
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        found = [int(m[1]) for m in load._TOKEN.finditer(data, 0, cut)]
        if found:
            now = time.perf_counter()
            invocation.result.tokens += found
            invocation.result.times += [now] * len(found)

    def on_message_complete(self) -> None:
        if self.waiter is not None:
            return  # a `next`: answered once an invocation comes
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ACCEPTED)
        if self.invocation is None:
            self._close()
            return
        if self.error_document:
            error = f"invocation error: {self.head[:300].decode(errors='replace')}"
        elif ERROR_TYPE in self.headers:  # a failure after the prelude: in its trailers
            error = f"error trailers: {self.headers[ERROR_TYPE].decode()}"
        elif not self.prelude_seen:
            error = "no prelude"
        else:
            error = None
        self._finish(error)
        self._close()

    def _finish(self, error: str | None) -> None:
        invocation = self.invocation
        assert invocation is not None
        if not invocation.done.done():
            invocation.result.error = error
            invocation.done.set_result(invocation.result)
            self.api.by_id.pop(invocation.request_id, None)

    async def _next(self) -> None:
        self.api.waiting += 1
        try:
            invocation = await self.api.pending.get()
        finally:
            self.api.waiting -= 1
        if self.transport is None or self.transport.is_closing():
            self.api.pending.put_nowait(invocation)  # not taken: the next `next` has it
            return
        deadline_ms = int((time.time() + 300) * 1000)
        # As Lambda passes it with active tracing (template.yaml's Tracing: Active).
        trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
        trace += f"Parent={uuid.uuid4().hex[:16]};Sampled=1"
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            f"content-length: {len(invocation.event)}\r\n"
            f"lambda-runtime-aws-request-id: {invocation.request_id}\r\n"
            f"lambda-runtime-invocation-id: {invocation.invocation_id}\r\n"
            f"lambda-runtime-deadline-ms: {deadline_ms}\r\n"
            "lambda-runtime-invoked-function-arn: "
            "arn:aws:lambda:us-east-1:000000000000:function:streamfn-bench\r\n"
            f"lambda-runtime-trace-id: {trace}\r\n\r\n"
        )
        self.transport.write(head.encode() + invocation.event)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
