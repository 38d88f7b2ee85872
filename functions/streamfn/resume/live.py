"""Streams that outlive their connection.

A `Producer` runs one stream in a task of its own: it reads the guarded chunks, encodes them in
the stream's dialect, and keeps every event, numbered from 1. Responses follow it (the one that
started it, and any number that resume it). When no response is attached for the grace period,
the producer is cancelled, which cancels the upstream request, so a client that never comes back
costs what it cost before resume existed plus the grace period.

`Streams` is the process's registry of producers and the journal that writes their events to
the durable log: one task for the whole process, one batch per tick for every stream with new
events, so a thousand streams cost a write per tick, not a write per token. It also asks the log
about once a second whether any of its streams was stopped from another process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from typing import Literal

from streamfn.chunks import StreamChunk, StreamError
from streamfn.dialects import Encode, Event
from streamfn.resume import Head, StreamLog
from streamfn.resume.journal import Journal

logger = logging.getLogger(__name__)

Why = Literal["stopped", "abandoned"]
_ENDED: dict[Why, str] = {
    "stopped": "the stream was stopped on request",
    "abandoned": "the stream was cancelled with no client reading it (none came back within "
    "the resume grace period, or the server shut down)",
}


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
        self.head = head
        self.events: list[Event] = []
        self.ended = False
        # The first chunk: what the starting request decides its HTTP status by.
        self.first: asyncio.Future[StreamChunk] = loop.create_future()
        self._streams = streams
        # One future per waiting follower: a follower cancelled (its client left) must not
        # cancel the others' wait, as one shared future would.
        self._waiting: list[asyncio.Future[None]] = []
        self._holds = 1  # the request that started it is attached from the start
        self._grace: asyncio.TimerHandle | None = None
        self._why: Why | None = None
        self._started = False
        # Journal state: how much of it the log has.
        self.written = 0
        self.page_start = 0  # where the last page written begins
        self.head_written = False
        self.durable: asyncio.Future[None] = loop.create_future()
        self._task = loop.create_task(self._run(chunks, encode))

    async def _run(self, chunks: AsyncGenerator[StreamChunk, None], encode: Encode) -> None:
        try:
            try:
                self._started = True
                if self._why is not None:  # cancelled before this task first ran
                    raise asyncio.CancelledError
                async for chunk in chunks:
                    if not self.first.done():
                        self.first.set_result(chunk)
                    self._add(encode(chunk))
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
        had = len(self.events)
        self.events.extend(events)
        if len(self.events) > had:
            self._wake()
            self._streams.changed(self)

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def follow(self, after: int) -> AsyncGenerator[tuple[int, Event], None]:
        """The events numbered above `after`, then each as it comes, until the end."""
        seq = after
        while True:
            events = self.events
            while seq < len(events):
                seq += 1
                yield seq, events[seq - 1]
            if self.ended:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter

    def remaining(self, after: int) -> bool:
        """Whether a client that has event `after` has anything left to get."""
        return not self.ended or after < len(self.events)

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
        grace_s = self._streams.grace_s
        if grace_s <= 0:
            self.cancel("abandoned")
        else:
            self._grace = asyncio.get_running_loop().call_later(grace_s, self.cancel, "abandoned")

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


class Streams:
    """The process's producers, and the journal that makes their events durable."""

    def __init__(
        self, log: StreamLog | None, *, grace_s: float, timeout_s: float, prompt_end: bool = False
    ) -> None:
        self.log = log
        # Without a log nothing can resume a stream, so nothing should wait for a resume.
        self.grace_s = grace_s if log is not None else 0.0
        self._live: dict[str, Producer] = {}
        self._journal = (
            Journal(log, self._live, timeout_s=timeout_s, prompt_end=prompt_end)
            if log is not None
            else None
        )

    async def prepare(self) -> None:
        """Open the log at start-up, in a worker thread, rather than on a stream's first write
        (where making a boto3 client would hold the GIL while tokens wait)."""
        if self.log is None:
            return
        try:
            await asyncio.to_thread(self.log.prepare)
        except Exception:  # serving goes on; each write will say what is wrong
            logger.exception("the stream log cannot be opened: streams may not resume")

    def start(
        self, head: Head, chunks: AsyncGenerator[StreamChunk, None], encode: Encode
    ) -> Producer:
        producer = Producer(head, chunks, encode, self)
        self._live[head.id] = producer
        self.changed(producer)
        return producer

    def changed(self, producer: Producer) -> None:
        """`producer` has events (or a head, or an end) the log lacks."""
        if self._journal is not None:
            self._journal.changed(producer)

    async def ended(self, producer: Producer) -> None:
        """`producer`'s stream has ended: once the log has its last page, it leaves the
        registry (a resume then reads the log)."""
        try:
            if self._journal is not None:
                await self._journal.settled(producer)
        finally:
            self._live.pop(producer.head.id, None)

    def local(self, id: str) -> Producer | None:
        return self._live.get(id)

    async def head(self, id: str) -> Head | None:
        producer = self._live.get(id)
        if producer is not None:
            return producer.head
        if self.log is None:
            return None
        return await asyncio.to_thread(self.log.head, id)

    async def latest(self, owner: str, chat: str) -> str | None:
        """The last stream `owner` started for the AI SDK chat `chat`."""
        if self.log is None:
            mine = (p.head for p in self._live.values())
            return next((h.id for h in mine if (h.owner, h.chat) == (owner, chat)), None)
        return await asyncio.to_thread(self.log.latest, owner, chat)

    async def running(self, head: Head) -> bool:
        """Whether `head`'s stream has yet to end."""
        producer = self._live.get(head.id)
        if producer is not None:
            return not producer.ended
        if self.log is None:
            return False
        pages = await asyncio.to_thread(self.log.pages, head.id, 0)
        return not (pages and pages[-1].end)

    async def remaining(self, head: Head, after: int) -> bool:
        """Whether a client that has event `after` of `head`'s stream has anything left."""
        producer = self._live.get(head.id)
        if producer is not None:
            return producer.remaining(after)
        if self.log is None:
            return False
        pages = await asyncio.to_thread(self.log.pages, head.id, max(after - 1, 0))
        return not (pages and pages[-1].end and pages[-1].last <= after)

    def follow(self, head: Head, after: int) -> AsyncGenerator[tuple[int, Event], None]:
        """The stream's events numbered above `after`, live: from its producer when it runs in
        this process, else from the log, polled until its end page."""
        producer = self._live.get(head.id)
        if producer is not None:
            return producer.follow(after)
        return self._from_log(head, after)

    async def _from_log(self, head: Head, after: int) -> AsyncGenerator[tuple[int, Event], None]:
        assert self.log is not None
        log, seq = self.log, after
        while True:
            for page in await asyncio.to_thread(log.pages, head.id, seq):
                for item in page.after(seq):
                    yield item
                    seq = item[0]
                if page.end:
                    return
            if time.time() > head.ends_by:
                # Its producer died without an end (a killed process): nothing more will come.
                logger.warning("stream %s has no end in the log after its deadline", head.id)
                return
            producer = self._live.get(head.id)
            if producer is not None:  # it started here after all (a slow resume)
                async for item in producer.follow(seq):
                    yield item
                return
            await asyncio.sleep(log.poll_s)

    async def stop(self, head: Head) -> None:
        producer = self._live.get(head.id)
        if producer is not None:
            producer.cancel("stopped")
        elif self.log is not None:
            await asyncio.to_thread(self.log.stop, head.id)

    async def aclose(self) -> None:
        """Cancel what is still running, write what is left, close the log."""
        for producer in list(self._live.values()):
            producer.cancel("abandoned")
        for producer in list(self._live.values()):
            try:
                await producer.closed()
            except Exception:
                logger.exception("stream %s did not close cleanly", producer.head.id)
        if self._journal is not None:
            await self._journal.aclose()
