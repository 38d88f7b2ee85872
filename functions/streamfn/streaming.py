"""One chat's response: its stream's producer waited on until the first chunk, then followed
as the dialect's events (or, for clients that asked for one JSON answer, collected whole)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TypeVar

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from streamfn.chunks import (
    Finish,
    ReasoningEnd,
    StreamChunk,
    StreamError,
    TextDelta,
    ToolCallEnd,
)
from streamfn.content import Reasoning, ToolCall
from streamfn.controls import header_value
from streamfn.dialects import Dialect
from streamfn.errors import retry_headers, status_for
from streamfn.resume.producer import Producer
from streamfn.sse import EventStream

logger = logging.getLogger(__name__)
T = TypeVar("T")

# nginx's "client closed request": the status of a request whose client left before an answer.
# Nobody reads it; the usage record does.
CLIENT_LEFT = 499


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _cancel(work: asyncio.Future[T]) -> None:
    """Cancel `work` if it is still going, and wait until it has taken the cancellation (its
    `finally` blocks, closing upstream requests, have run)."""
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work


async def _until_disconnect(work: asyncio.Future[T], receive: Receive) -> T | None:
    """`work`'s result, or None if the client left first (then `work` is cancelled, and the
    cancellation reaches the provider's generator so that its `finally` runs now)."""
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        await _cancel(work)
    return work.result() if not work.cancelled() else None


def error_response(dialect: Dialect, error: StreamError) -> Response:
    """A stream that failed before its first byte, as an HTTP status in `dialect`'s shape."""
    return dialect.error(
        status_for(error),
        error.type,
        error.message,
        retryable=error.retryable,
        headers=retry_headers(error),
    )


async def _within(work: asyncio.Future[T], seconds: float | None) -> bool:
    """Whether `work` is done within `seconds` (None: however long it takes); it goes on."""
    await asyncio.wait((work,), timeout=seconds)
    return work.done()


class Attached(Response):
    """`response`, served while attached to `producer`: while any response is, the stream
    needs no resume and no grace period runs. The response that started the stream
    (`origin`) then waits for the stream's end, so that its account settles (and, in Lambda,
    its invocation ends) only once the stream has, whoever read it."""

    def __init__(self, response: Response, producer: Producer, *, origin: bool) -> None:
        # No Response.__init__: this response has no body of its own, it sends `response`'s.
        self.response = response
        self.status_code = response.status_code
        self.background = None
        self._producer = producer
        self._origin = origin
        response.headers["x-stream-id"] = header_value(producer.head.id, name="stream_id")

    @property
    def headers(self) -> MutableHeaders:
        return self.response.headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        producer = self._producer
        if not self._origin:
            producer.hold()  # the origin's hold was taken when the producer started
        try:
            await self.response(scope, receive, send)
        finally:
            producer.release()
        if self._origin:
            await producer.closed()


async def stream_response(
    producer: Producer,
    request: Request,
    *,
    dialect: Dialect,
    retry_ms: int,
    keepalive_s: float,
    write_timeout_s: float | None = None,
    early_commit_s: float | None = None,
) -> Attached:
    """`producer`'s stream, once its first chunk has come.

    Holding the response until the first chunk lets a failure before any token be a real HTTP
    status. A client that leaves meanwhile detaches: the stream goes on for the resume grace
    period, then is cancelled, upstream request and all, if nobody has resumed it. With
    `early_commit_s`, the response starts after that long without a first chunk, keepalive
    comments flowing, so that proxies that cut idle connections (often at 60 s) keep it; a
    failure after that is an `error` event.
    """
    first = producer.first
    came = await _until_disconnect(
        asyncio.ensure_future(_within(first, early_commit_s)), request.receive
    )
    if came is None:
        logger.info("client left before the first token")
        return Attached(Response(status_code=CLIENT_LEFT), producer, origin=True)
    failed = first.result() if came else None
    if isinstance(failed, StreamError):
        return Attached(error_response(dialect, failed), producer, origin=True)
    if not came:
        logger.info("no first token after %s s: committing early", early_commit_s)
    response = EventStream(
        producer.follow(0),
        stream=producer.head.id,
        retry_ms=retry_ms,
        keepalive_s=keepalive_s,
        write_timeout_s=write_timeout_s,
        headers=dialect.stream_headers,
        keepalive=dialect.keepalive,
    )
    return Attached(response, producer, origin=True)


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer, for clients that asked for one response rather than a stream."""

    text: str
    reasoning: tuple[Reasoning, ...]
    tool_calls: tuple[ToolCall, ...]
    finish: Finish


async def _collect(chunks: AsyncGenerator[StreamChunk, None]) -> Completion | StreamError:
    text: list[str] = []
    reasoning: list[Reasoning] = []
    calls: list[ToolCall] = []
    async for chunk in chunks:
        match chunk:
            case TextDelta():
                text.append(chunk.text)
            case ReasoningEnd():
                reasoning.append(chunk.block)
            case ToolCallEnd():
                calls.append(chunk.call)
            case Finish():
                return Completion("".join(text), tuple(reasoning), tuple(calls), chunk)
            case StreamError():
                return chunk
    raise AssertionError("a guarded stream ends with a final chunk")


async def complete_response(
    chunks: AsyncGenerator[StreamChunk, None],
    request: Request,
    *,
    dialect: Dialect,
    render: Callable[[Completion], Response],
) -> Response:
    """The whole answer in one response. Nothing is sent before the end, so any failure, even
    one after the first token, is an HTTP status."""
    try:
        result = await _until_disconnect(asyncio.ensure_future(_collect(chunks)), request.receive)
    finally:
        await chunks.aclose()
    if result is None:
        logger.info("client left before the answer was complete")
        return Response(status_code=CLIENT_LEFT)
    if isinstance(result, StreamError):
        return error_response(dialect, result)
    return render(result)
