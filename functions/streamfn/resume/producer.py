"""One stream, produced whether or not anyone is reading it.

A `Producer` runs one stream in a task of its own: it reads the guarded chunks, encodes them in
the stream's dialect, and numbers every event from 1. Responses follow it (the one that started
it, and any number that resume it). When no response is attached here and no reader is present
in another process for the grace period, the producer is cancelled, which cancels the upstream
request, so a client that never comes back costs what it cost before resume existed plus the
grace period.

Memory is bounded per stream, whatever its readers do: the producer holds a short window of
events (`_KEEP` characters once they are in the log; all until then, up to `_MAX_HELD`, past
which it waits for the journal, and so for the log, before it reads on). A reader that falls
behind the window reads the log; without a log, the producer waits for its slowest reader.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from streamfn.chunks import StreamChunk, StreamError, generated
from streamfn.dialects import Encode, Event
from streamfn.resume import RUN_CHARS, Head, Run, Runs

if TYPE_CHECKING:
    from streamfn.resume.live import Streams

logger = logging.getLogger(__name__)

Why = Literal["stopped", "abandoned", "interrupted"]
_ENDED: dict[Why, str] = {
    "stopped": "the stream was stopped on request",
    "abandoned": "the stream was cancelled with no client reading it (none came back within "
    "the resume grace period, or the server shut down)",
    "interrupted": "the server producing this stream stopped (it crashed or was killed) "
    "before the stream ended; what it had produced is above",
}
# Characters of events a producer keeps once the log has them, for readers a little behind.
_KEEP = 32 << 10
# Characters of events a producer may hold at most before it waits (for the log to take them,
# or, without a log, for its slowest reader).
_MAX_HELD = 256 << 10


class Producer:
    """One stream, produced whether or not anyone is reading it."""

    def __init__(
        self,
        head: Head,
        chunks: AsyncGenerator[StreamChunk, None],
        encode: Encode,
        streams: Streams,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._encode = encode
        self.head = head
        if not head.will:
            head = self.head = replace(head, will=self.will())
        # Events numbered `base + 1` on, the window this producer holds; those before are in
        # the log (or, without one, every reader has had them).
        self._window: list[Event] = []
        self.base = 0
        self._held = 0  # characters of data in the window
        self.chars = 0  # characters the model has generated (for usage estimates)
        self.ended = False
        # The first chunk: what the starting request decides its HTTP status by.
        self.first: asyncio.Future[StreamChunk] = loop.create_future()
        self._streams = streams
        # One future per waiting follower: a follower cancelled (its client left) must not
        # cancel the others' wait, as one shared future would.
        self._waiting: list[asyncio.Future[None]] = []
        self._room: asyncio.Future[None] | None = None  # the producer's wait for room
        self._cursors: list[list[int]] = []  # each follower's position (without a log)
        self._holds = 1  # the request that started it is attached from the start
        self._grace: asyncio.TimerHandle | None = None
        self._idle_since = 0.0  # monotonic time when the last reader here left
        self.read_elsewhere = 0.0  # monotonic time a reader was last known in another process
        self._why: Why | None = None
        self._checking: asyncio.Future[None] | None = None  # the log asked for readers
        self._started = False
        # Journal state: how much of it the log has.
        self.written = 0
        self.page_start = 0  # where the last page written begins
        self.head_written = False
        self.lost = False  # another process ended it in the log, taking this one for dead
        self.durable: asyncio.Future[None] = loop.create_future()
        self._task = loop.create_task(self._run(chunks))

    @property
    def count(self) -> int:
        """How many events the stream has produced."""
        return self.base + len(self._window)

    def between(self, start: int, end: int) -> list[Event]:
        """Events numbered `start + 1` to `end`, which the window must still hold."""
        assert start >= self.base, (start, self.base)
        return self._window[start - self.base : end - self.base]

    def will(self) -> tuple[Event, ...]:
        """The events that would end this stream now were its producer to die: its dialect's
        `interrupted` error, from a copy of the encoder's state (open parts closed, ...)."""
        error = StreamError("interrupted", _ENDED["interrupted"], retryable=True)
        return tuple(copy.deepcopy(self._encode)(error))

    async def _run(self, chunks: AsyncGenerator[StreamChunk, None]) -> None:
        encode = self._encode
        try:
            try:
                self._started = True
                if self._why is not None:  # cancelled before this task first ran
                    raise asyncio.CancelledError
                async for chunk in chunks:
                    if not self.first.done():
                        self.first.set_result(chunk)
                    self.chars += generated(chunk)
                    self._add(encode(chunk))
                    while self._held > _MAX_HELD and not self._trim():
                        self._room = asyncio.get_running_loop().create_future()
                        self._streams.hurry()  # the log to take them now, not at its next tick
                        await self._room
            except asyncio.CancelledError:
                if self._why is None:
                    raise  # the server is shutting down
                error = StreamError(self._why, _ENDED[self._why], retryable=False)
                if not self.first.done():
                    self.first.set_result(error)
                self._add(encode(error))
                logger.info("stream %s: %s", self.head.id, _ENDED[self._why])
        finally:
            try:
                await chunks.aclose()
            finally:
                self.ended = True
                if not self.first.done():
                    self.first.cancel()
                if self._grace is not None:
                    self._grace.cancel()
                self._wake()
                await self._streams.ended(self)

    def _add(self, events: Iterable[Event]) -> None:
        # On every token: a plain loop, not a slice of the window and a generator.
        window, had, held = self._window, len(self._window), self._held
        for event in events:
            window.append(event)
            held += len(event.data)
        if len(window) > had:
            self._held = held
            self._wake()
            self._streams.changed(self)

    def _trim(self) -> bool:
        """Let go of what no reader needs from memory; whether there is room now."""
        if self._streams.log is not None:
            # What the log has, but the last page written (the journal may write it again,
            # ended) and a tail of `_KEEP` for readers a little behind.
            limit, keep = min(self.written, self.page_start), _KEEP
        else:
            # What every reader has had. Before the first reader comes (the response that
            # started it follows once the first chunk is in), nothing.
            limit, keep = min((c[0] for c in self._cursors), default=0), 0
        drop = 0
        window, held = self._window, self._held
        while drop < limit - self.base and held > keep:
            held -= len(window[drop].data)
            drop += 1
        if drop:
            del window[:drop]
            self.base += drop
            self._held = held
        return held <= _MAX_HELD

    def persisted(self) -> None:
        """The journal wrote more of the stream: what it wrote may leave memory."""
        self._trim()
        self._make_room()

    def _make_room(self) -> None:
        if self._room is not None and not self._room.done() and self._held <= _MAX_HELD:
            self._room.set_result(None)

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def follow(self, after: int) -> Runs:
        """The events numbered above `after`, then the rest as they come, until the end, in
        runs: those ready together (up to `RUN_CHARS` of them). Those no longer in memory come
        from the log."""
        cursor = [after]
        self._cursors.append(cursor)
        try:
            seq = after
            while True:
                if seq < self.base:
                    if self._streams.log is not None:
                        behind = seq
                        async for logged in self._streams.logged(self.head.id, seq, self.base):
                            yield logged
                            seq = cursor[0] = logged[-1][0]
                        if seq > behind:
                            continue  # more may follow, a few pages at a time
                    if seq < self.base:  # the log lacks them (a write given up): skip
                        logger.warning(
                            "stream %s: events %s to %s are lost", self.head.id, seq + 1, self.base
                        )
                        seq = self.base
                    continue
                window, base = self._window, self.base
                if seq < base + len(window):  # `count`, inlined
                    run: Run = []
                    chars = 0
                    for i in range(seq - base, len(window)):
                        event = window[i]
                        seq += 1
                        run.append((seq, event))
                        chars += len(event.data)
                        if chars >= RUN_CHARS:
                            break
                    yield run
                    cursor[0] = seq
                    room = self._room
                    if room is not None and not room.done() and self._streams.log is None:
                        self._trim()
                        self._make_room()
                    continue
                if self.ended:
                    return
                waiter = asyncio.get_running_loop().create_future()
                self._waiting.append(waiter)
                await waiter
        finally:
            self._cursors.remove(cursor)

    def remaining(self, after: int) -> bool:
        """Whether a client that has event `after` has anything left to get."""
        return not self.ended or after < self.count

    def hold(self) -> None:
        """A response is attached: no grace period runs while one is."""
        self._holds += 1
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def release(self) -> None:
        """A response has ended (its client left, or it sent everything)."""
        self._holds -= 1
        if self._holds > 0 or self.ended:
            return
        self._idle_since = time.monotonic()
        grace_s = self._streams.grace_s
        if grace_s <= 0:
            self.cancel("abandoned")
        else:
            self._grace = asyncio.get_running_loop().call_later(grace_s, self._expire)

    def _expire(self) -> None:
        """The grace period is over, unless a reader in another process has been present
        since it began: then it begins again when that reader leaves."""
        self._grace = None
        if self._holds > 0 or self.ended:
            return
        idle_since = max(self._idle_since, self.read_elsewhere)
        left = idle_since + self._streams.grace_s - time.monotonic()
        if left > 0:
            self._grace = asyncio.get_running_loop().call_later(left, self._expire)
        else:
            # The last heartbeat may predate a reader that came since: ask the log itself.
            self._checking = asyncio.ensure_future(self._streams.abandoned(self))

    def read_now(self) -> None:
        """A reader is known to be present in another process now."""
        self.read_elsewhere = time.monotonic()
        if self._holds == 0 and self._grace is None and not self.ended:
            self._grace = asyncio.get_running_loop().call_later(self._streams.grace_s, self._expire)

    def cancel(self, why: Why) -> None:
        """End the stream now: the upstream request is cancelled, and the last event says why."""
        if not self.ended and self._why is None:
            self._why = why
            # Not yet started, `_run` sees `_why` first thing: a task cancelled before its
            # first step would never run its `finally`.
            if self._started:
                self._task.cancel()

    async def closed(self) -> None:
        """Wait until the stream has ended and its end is in the log. If this wait is
        cancelled (the server is shutting down), the stream is cancelled too."""
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            self.cancel("abandoned")
            raise
