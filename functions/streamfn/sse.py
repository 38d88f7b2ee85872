"""SSE framing: the one place that turns events into `text/event-stream` bytes.

Built on sse-starlette, which writes multi-line data as one `data:` line per line, sends keepalive
comments under a lock so they never interleave with an event, and stops on client disconnect.
What it adds: a monotonic `id` on every event, a `retry` hint on the first, and closing the event
source however the response ends.

SSE cannot carry a carriage return in data: a WHATWG parser ends a line at CR, LF or CRLF and
joins data lines with LF (https://html.spec.whatwg.org/multipage/server-sent-events.html
#event-stream-interpretation). So CR and CRLF in text arrive as LF; everything else, leading
spaces and colons and any Unicode included, arrives exactly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from streamfn.dialects import Event

logger = logging.getLogger(__name__)

HEADERS = {
    # no-store keeps caches out; X-Accel-Buffering (set by sse-starlette too) turns off nginx's
    # proxy buffering for this response; no-transform keeps proxies from compressing it.
    "Cache-Control": "no-store, no-transform",
    "X-Accel-Buffering": "no",
}


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment="keepalive", sep="\n")


# A lone surrogate (say, half of a JSON "\ud83d\ude00" escape that an upstream split) is not
# UTF-8; it becomes U+FFFD rather than failing the whole stream.
_SURROGATE = re.compile("[\ud800-\udfff]")


def encode(event: Event, *, id: int, retry_ms: int | None = None) -> bytes:
    """The bytes of one event."""
    sse = ServerSentEvent(event.data, event=event.name, id=str(id), retry=retry_ms, sep="\n")
    try:
        return sse.encode()
    except UnicodeEncodeError:
        sse.data = _SURROGATE.sub("\ufffd", event.data)
        return sse.encode()


async def _framed(events: AsyncGenerator[Event, None], retry_ms: int) -> AsyncIterator[bytes]:
    try:
        seq = 0
        async for event in events:
            seq += 1
            yield encode(event, id=seq, retry_ms=retry_ms if seq == 1 else None)
    finally:
        # Runs when the stream ends, fails, or sse-starlette cancels it on disconnect; closing
        # `events` closes everything upstream of it.
        await events.aclose()


class _Stream(EventSourceResponse):
    """A client that takes no bytes for `send_timeout` seconds (it stopped reading, and the
    socket's buffers are full) is treated as gone: sse-starlette then closes the event source,
    which cancels the upstream request, and raises; that is a departure, not a failure."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            logger.info("the client took nothing for %s s: treated as gone", self.send_timeout)


def event_stream(
    events: AsyncGenerator[Event, None],
    *,
    retry_ms: int,
    keepalive_s: float,
    write_timeout_s: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """A streaming response that frames `events` as they are produced."""
    return _Stream(
        _framed(events, retry_ms),
        headers={**HEADERS, **(headers or {})},
        ping=keepalive_s,
        ping_message_factory=_keepalive,
        sep="\n",
        send_timeout=write_timeout_s,
    )
