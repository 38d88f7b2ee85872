"""SSE framing: the one place that turns events into `text/event-stream` bytes.

Built on sse-starlette, which sends keepalive comments under a lock so they never interleave
with an event and stops on client disconnect. What it adds: the encoding (one `data:` line per
line of data, as sse-starlette's `ServerSentEvent` writes it, in one call per event), an `id`
on every event naming its stream and its number, a `retry` hint on the first, the events that
are ready joined into one write, a write timeout on one timer, and closing the event source
however the response ends.

SSE cannot carry a carriage return in data: a WHATWG parser ends a line at CR, LF or CRLF and
joins data lines with LF (https://html.spec.whatwg.org/multipage/server-sent-events.html
#event-stream-interpretation). So CR and CRLF in text arrive as LF; everything else, leading
spaces and colons and any Unicode included, arrives exactly.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from streamfn.connection import abort
from streamfn.dialects import Event
from streamfn.watchdog import Watchdog

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
_LINES = re.compile("\r\n|\r|\n")


def encode(event: Event, *, id: str, retry_ms: int | None = None) -> bytes:
    """The bytes of one event: `id`, `event`, one `data` line per line of data, `retry`; the
    field order and spelling of sse-starlette's `ServerSentEvent`, written here in one format
    call because this runs once per token."""
    data = event.data
    if "\n" in data or "\r" in data:
        data = "\ndata: ".join(_LINES.split(data))
    if event.name is None:
        text = f"id: {id}\ndata: {data}\n"
    else:
        text = f"id: {id}\nevent: {event.name}\ndata: {data}\n"
    if retry_ms is not None:
        text += f"retry: {retry_ms}\n"
    try:
        return (text + "\n").encode()
    except UnicodeEncodeError:
        return (_SURROGATE.sub("\ufffd", text) + "\n").encode()


# Bytes of events a response buffers while its writes wait; the reader of events waits past it.
_MAX_BUFFERED = 64 << 10


async def _framed(
    events: AsyncGenerator[tuple[int, Event], None], stream: str, retry_ms: int
) -> AsyncIterator[bytes]:
    """The events' bytes, numbered events framed with the id `<stream>:<n>`, the events that
    are ready joined into one write.

    A task of its own reads `events` into a buffer while the response's task writes what has
    been buffered: when the reader (or the network) is slower than the provider, everything
    that came meanwhile goes out in one send, not one per token; the first event is never held
    back, since the writer takes whatever is there as soon as anything is."""
    loop = asyncio.get_running_loop()
    buffered: list[bytes] = []
    size = 0  # bytes buffered
    wake: asyncio.Future[None] | None = None
    room: asyncio.Future[None] | None = None

    async def read() -> None:
        nonlocal wake, room, size
        retry: int | None = retry_ms  # on the first event of each response
        try:
            async for seq, event in events:
                data = encode(event, id=f"{stream}:{seq}", retry_ms=retry)
                buffered.append(data)
                size += len(data)
                retry = None
                if wake is not None and not wake.done():
                    wake.set_result(None)
                if size > _MAX_BUFFERED:
                    # A reader that takes nothing must not pull the whole stream into memory:
                    # the rest waits where it is (the producer, or the log).
                    room = loop.create_future()
                    await room
        finally:
            # However the stream ends (done, failed, or this task cancelled because the client
            # left): closing `events` closes everything upstream of it, the request included.
            await events.aclose()

    reader = loop.create_task(read())
    try:
        while True:
            if not buffered:
                if reader.done():
                    reader.result()  # its failure, if it failed
                    return
                wake = loop.create_future()
                await asyncio.wait((wake, reader), return_when=asyncio.FIRST_COMPLETED)
                continue
            out = buffered[0] if len(buffered) == 1 else b"".join(buffered)
            buffered.clear()
            size = 0
            if room is not None and not room.done():
                room.set_result(None)
            yield out
    finally:
        # When the stream ends early (sse-starlette closes this on a disconnect or a write
        # timeout), the reader is cancelled and closes `events` itself; awaiting it here could
        # not be relied on, as this runs inside a cancelled scope.
        reader.cancel()


class _Stream(EventSourceResponse):
    """A client that takes no bytes for `send_timeout` seconds (it stopped reading, and the
    socket's buffers are full) is treated as gone: sse-starlette then closes the event source,
    which cancels the upstream request, and raises; that is a departure, not a failure.

    The write timeout is one `Watchdog` per stream rather than sse-starlette's cancel scope per
    send, which cost as much as the send itself."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._watchdog = Watchdog(asyncio.get_running_loop())
        try:
            await super().__call__(scope, receive, send)
        except* SendTimeoutError:
            reset = abort(scope)  # its queued bytes dropped now, not sent on for minutes
            logger.info(
                "the client took nothing for %s s: treated as gone%s",
                self.send_timeout,
                ", its connection reset" if reset else "",
            )
        finally:
            self._watchdog.stop()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        watchdog = self._watchdog
        if self.send_timeout is None or watchdog.waiter is not None:
            # No timeout; or a keepalive while an event's send waits: sse-starlette's own way.
            await super()._send_with_timeout(send, message)
            return
        watchdog.start(self.send_timeout)
        try:
            await send(message)
        except asyncio.CancelledError:
            if watchdog.owns_cancellation():
                raise SendTimeoutError() from None
            raise
        finally:
            watchdog.done()


def event_stream(
    events: AsyncGenerator[tuple[int, Event], None],
    *,
    stream: str,
    retry_ms: int,
    keepalive_s: float,
    write_timeout_s: float | None = None,
    headers: Mapping[str, str] | None = None,
    keepalive: Event | None = None,
) -> EventSourceResponse:
    """A streaming response that frames `stream`'s numbered `events` as they are produced,
    with a `keepalive` event (unnumbered; by default a comment) every `keepalive_s`."""
    ping = _keepalive
    if keepalive is not None:
        name, data = keepalive.name, keepalive.data

        def ping() -> ServerSentEvent:
            return ServerSentEvent(data=data, event=name, sep="\n")

    return _Stream(
        _framed(events, stream, retry_ms),
        headers={**HEADERS, **(headers or {})},
        ping=keepalive_s,
        ping_message_factory=ping,
        sep="\n",
        send_timeout=write_timeout_s,
    )
