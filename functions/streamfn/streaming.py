"""One streamed chat: provider, guard, first-token hold, dialect, SSE framing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from streamfn.chunks import StreamChunk, StreamError
from streamfn.dialects import Event
from streamfn.errors import stream_error_response
from streamfn.guard import Timeouts, guard
from streamfn.providers import Provider
from streamfn.sse import event_stream
from streamfn.usage import Tally

logger = logging.getLogger(__name__)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _first_chunk(
    chunks: AsyncGenerator[StreamChunk, None], receive: Receive
) -> StreamChunk | None:
    """The stream's first chunk, or None if the client left before it came.

    Holding the response until the first chunk lets a failure before any token be a real HTTP
    status; watching for the disconnect meanwhile keeps a departed client's upstream request
    from running on until its first token.
    """
    first = asyncio.ensure_future(anext(chunks))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((first, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not first.done():
            first.cancel()
            # Let the cancellation reach the provider's generator so its `finally` runs now.
            with contextlib.suppress(asyncio.CancelledError):
                await first
    return first.result() if not first.cancelled() else None


async def _events(
    first: StreamChunk,
    chunks: AsyncGenerator[StreamChunk, None],
    dialect: Callable[[StreamChunk], tuple[Event, ...]],
) -> AsyncGenerator[Event, None]:
    try:
        for event in dialect(first):
            yield event
        async for chunk in chunks:
            for event in dialect(chunk):
                yield event
    finally:
        await chunks.aclose()


async def stream_chat(
    provider: Provider,
    tally: Tally,
    request: Request,
    *,
    dialect: Callable[[StreamChunk], tuple[Event, ...]],
    timeouts: Timeouts,
    retry_ms: int,
    keepalive_s: float,
) -> Response:
    """Stream `tally.request` from `provider` as `dialect`'s events; `tally` sees every chunk
    go by."""
    chunks = tally.observe(guard(provider.stream(tally.request), timeouts))
    first = await _first_chunk(chunks, request.receive)
    if first is None:
        await chunks.aclose()
        logger.info("client left before the first token")
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    if isinstance(first, StreamError):
        await chunks.aclose()
        return stream_error_response(first)
    return event_stream(_events(first, chunks, dialect), retry_ms=retry_ms, keepalive_s=keepalive_s)
