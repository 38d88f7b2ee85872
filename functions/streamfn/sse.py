"""SSE framing: the one place that turns events into `text/event-stream` bytes.

Each event in the format of sse-starlette's `ServerSentEvent` (one `data:` line per line of
data), written here in one call per event; an `id` on every event naming its stream and its
number, a `retry` hint on the first; the events that are ready joined into one write;
keepalives on one timer a stream, a write timeout on another; and the event source closed
however the response ends (`EventStream`).

SSE cannot carry a carriage return in data: a WHATWG parser ends a line at CR, LF or CRLF and
joins data lines with LF (https://html.spec.whatwg.org/multipage/server-sent-events.html
#event-stream-interpretation). So CR and CRLF in text arrive as LF; everything else, leading
spaces and colons and any Unicode included, arrives exactly.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from sse_starlette import ServerSentEvent
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from streamfn.connection import abort
from streamfn.dialects import Event
from streamfn.resume import Runs
from streamfn.watchdog import Watchdog

logger = logging.getLogger(__name__)

HEADERS = {
    # no-store keeps caches out; X-Accel-Buffering (set by sse-starlette too) turns off nginx's
    # proxy buffering for this response; no-transform keeps proxies from compressing it.
    "Cache-Control": "no-store, no-transform",
    "X-Accel-Buffering": "no",
}


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


@cache
def _keepalive(event: Event | None) -> bytes:
    """A keepalive's bytes: `event`, unnumbered, or by default a comment."""
    if event is None:
        return ServerSentEvent(comment="keepalive", sep="\n").encode()
    return ServerSentEvent(data=event.data, event=event.name, sep="\n").encode()


class _TookNothing(Exception):
    """A write waited past the write timeout."""


class EventStream(Response):
    """`text/event-stream`: the numbered events of `runs` as they come, each run (the events
    that were ready together) in one write, and a keepalive every `keepalive_s` seconds that
    nothing was written (0: none).

    Written here rather than with sse-starlette's `EventSourceResponse`, whose encoding this
    keeps (its `ServerSentEvent` writes the keepalives, `encode` the same format): that
    response runs four tasks per stream (the body, the pings, the disconnect, the server's
    exit), and cancelling them at its end left every stream's response, connection and frames
    in reference cycles that only a full collection frees (some 140 objects a stream; a full
    collection's walk over every open stream is the longest stall a busy server has). Here the
    response's own task writes everything; one small task waits for the client to leave, and
    one timer sends the keepalives.

    A client that leaves ends the response at once, whatever it waits on, and so does one that
    takes no bytes for `write_timeout_s` (it stopped reading, and the socket's buffers are
    full): its connection is then reset, its queued bytes dropped now rather than sent on for
    minutes. Either is a departure, not a failure. However the response ends, closing `runs`
    closes everything upstream of it (its follower; the upstream request, if nobody reads the
    stream within the grace period)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        runs: Runs,
        *,
        stream: str,
        retry_ms: int,
        keepalive_s: float,
        write_timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        keepalive: Event | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({**HEADERS, **(headers or {})})
        self._runs = runs
        self._stream = stream
        self._retry_ms = retry_ms
        self._keepalive_s = keepalive_s
        self._write_timeout_s = write_timeout_s
        self._keepalive = _keepalive(keepalive)
        # While the response runs: how it writes, and who writes.
        self._send: Send | None = None
        self._writer: asyncio.Task[Any] | None = None
        self._watchdog: Watchdog | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sending = False  # the writer's write is under way
        self._pinging: asyncio.Task[None] | None = None  # a keepalive's write is under way
        self._wrote_at = 0.0  # loop time of the last write
        self._ended = False  # nothing more is written
        self._left = False  # the client left (or took nothing): the writer was cancelled for it
        self._took_nothing = False  # a keepalive's write timed out

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        self._send, self._writer = send, asyncio.current_task()
        self._wrote_at = loop.time()
        self._watchdog = watchdog = Watchdog(loop)
        watcher = loop.create_task(self._watch(receive))
        if self._keepalive_s > 0:  # 0: none
            self._timer = loop.call_later(self._keepalive_s, self._tick)
        try:
            await self._write(
                {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            )
            retry: int | None = self._retry_ms
            stream = self._stream
            async for run in self._runs:
                if len(run) == 1:
                    seq, event = run[0]
                    body = encode(event, id=f"{stream}:{seq}", retry_ms=retry)
                else:
                    body = b"".join(
                        encode(event, id=f"{stream}:{seq}", retry_ms=None if i else retry)
                        for i, (seq, event) in enumerate(run)
                    )
                retry = None
                await self._write({"type": "http.response.body", "body": body, "more_body": True})
            self._ended = True
            await self._write({"type": "http.response.body", "body": b"", "more_body": False})
        except _TookNothing:
            self._timed_out(scope)
        except asyncio.CancelledError:
            writer = self._writer
            assert writer is not None
            if not self._left or writer.cancelling() > 1:
                raise  # the server is stopping, or the invocation is over: not a departure
            writer.uncancel()
            if self._took_nothing:
                self._timed_out(scope)
        finally:
            self._ended = True
            if self._timer is not None:
                self._timer.cancel()
            watcher.cancel()
            watchdog.stop()
            if self._pinging is not None:
                self._pinging.cancel()
            self._send = self._writer = self._watchdog = self._timer = self._pinging = None
            await self._runs.aclose()

    async def _write(self, message: Message) -> None:
        """One message from the writer, after any keepalive under way, under the timeout."""
        while self._pinging is not None:
            await asyncio.shield(self._pinging)
        self._sending = True
        try:
            await self._timed(message)
        finally:
            self._sending = False
        self._wrote_at = asyncio.get_running_loop().time()

    async def _timed(self, message: Message) -> None:
        timeout, watchdog, send = self._write_timeout_s, self._watchdog, self._send
        assert watchdog is not None
        assert send is not None
        if timeout is None:
            await send(message)
        else:
            watchdog.start(timeout)
            try:
                await send(message)
            except asyncio.CancelledError:
                if watchdog.owns_cancellation():
                    raise _TookNothing from None
                raise
            finally:
                watchdog.done()

    async def _watch(self, receive: Receive) -> None:
        """Wait for the client to leave; then end the response."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self._leave()

    def _leave(self) -> None:
        if not self._ended and not self._left and self._writer is not None:
            self._left = True
            self._writer.cancel()

    def _tick(self) -> None:
        """A keepalive once nothing has been written for `keepalive_s`, unless a write is
        under way; then the timer is set for the next."""
        if self._ended:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = self._wrote_at + self._keepalive_s
        if due <= now:
            if not self._sending and self._pinging is None:
                self._pinging = loop.create_task(self._ping())
            due = now + self._keepalive_s
        self._timer = loop.call_at(due, self._tick)

    async def _ping(self) -> None:
        try:
            keepalive = {"type": "http.response.body", "body": self._keepalive, "more_body": True}
            await self._timed(keepalive)
        except _TookNothing:
            self._took_nothing = True
            self._leave()  # the writer ends the response
        except Exception:  # the writer's next write meets the same failure, and says so
            logger.debug("a keepalive could not be written", exc_info=True)
        finally:
            self._pinging = None

    def _timed_out(self, scope: Scope) -> None:
        reset = abort(scope)  # its queued bytes dropped now, not sent on for minutes
        logger.info(
            "the client took nothing for %s s: treated as gone%s",
            self._write_timeout_s,
            ", its connection reset" if reset else "",
        )
