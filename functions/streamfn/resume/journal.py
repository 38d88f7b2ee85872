"""The journal: a process's streams' events written to the durable log in batches.

One task for the whole process gathers for a tenth of a second whatever every stream produced,
then writes it in one call (a SQLite transaction, or BatchWriteItem calls of 25 items), so a
thousand streams cost a write per tick, not a write per token, and no write is on a token's path.
A stream's head goes with its first batch. Twice a second it also asks the log whether any of
its live streams was stopped from another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from streamfn.resume import Head, Page, StreamLog

if TYPE_CHECKING:
    from streamfn.resume.live import Producer

logger = logging.getLogger(__name__)

_FLUSH_S = 0.1  # how long the journal gathers events before it writes a batch
_STOP_CHECK_S = 0.5
_RETRY_S = 1.0  # after a failed write
_ATTEMPTS = 3  # writes of one batch before it is given up
# A page's characters: under DynamoDB's 400 KB item limit even at four UTF-8 bytes each. (A
# single event larger than that cannot be logged there; it is the only event of its page.)
_PAGE_CHARS = 90_000


class Journal:
    def __init__(
        self,
        log: StreamLog,
        live: dict[str, Producer],
        *,
        timeout_s: float,
        prompt_end: bool,
    ) -> None:
        self.log = log
        self._live = live  # the registry's producers: those whose stops it checks
        self._timeout_s = timeout_s
        self._dirty: dict[str, Producer] = {}
        self._wakeup = asyncio.Event()
        # With `prompt_end`, a stream's end is written at once rather than with the next batch:
        # in Lambda, its invocation (billed, and busy for the next request) lasts until then.
        # Elsewhere only its usage record waits, and batching keeps writes off the token path.
        self._prompt_end = prompt_end
        self._urgent = asyncio.Event()
        self._ending = 0
        self._task: asyncio.Task[None] | None = None
        self._failures = 0  # writes failed in a row

    def changed(self, producer: Producer) -> None:
        self._dirty[producer.head.id] = producer
        if self._task is None:
            # Its events are made with the journal: an app may be served by one event loop,
            # shut down, and served by another (a test client's lifespans).
            self._wakeup, self._urgent = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._write_loop())
        self._wakeup.set()

    async def settled(self, producer: Producer) -> None:
        """Wait (within the timeout) until the log has `producer`'s stream to its end."""
        urgent = int(self._prompt_end)
        self._ending += urgent
        self.changed(producer)
        if urgent:
            self._urgent.set()
        try:
            async with asyncio.timeout(self._timeout_s):
                await asyncio.shield(producer.durable)
        except TimeoutError:
            logger.error("stream %s: its end did not reach the log", producer.head.id)
        finally:
            self._ending -= urgent

    async def _write_loop(self) -> None:
        wakeup, next_check = self._wakeup, 0.0
        while True:
            timeout = _STOP_CHECK_S if self._live else None
            try:
                async with asyncio.timeout(timeout):
                    await wakeup.wait()
            except TimeoutError:
                pass
            wakeup.clear()
            if not self._ending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_FLUSH_S):  # let the batch gather
                        await self._urgent.wait()
            self._urgent.clear()
            if not await self._flush():
                await asyncio.sleep(_RETRY_S)
            if self._live and time.monotonic() >= next_check:
                next_check = time.monotonic() + _STOP_CHECK_S
                await self._check_stops()

    def _batch(self) -> tuple[list[Head], list[Page], list[tuple[Producer, int, int, bool]]]:
        heads: list[Head] = []
        pages: list[Page] = []
        marks: list[tuple[Producer, int, int, bool]] = []
        for producer in self._dirty.values():
            if not producer.head_written:
                heads.append(producer.head)
            events, start = producer.events, producer.written
            end = len(events)
            ended = producer.ended and not producer.durable.done()
            page_start = producer.page_start
            if ended and start == end and end > 0:
                start = page_start  # nothing new since the last page: rewrite it, ended
            while start < end:
                stop, size = start + 1, len(events[start].data)
                while stop < end and size + len(events[stop].data) <= _PAGE_CHARS:
                    size += len(events[stop].data)
                    stop += 1
                pages.append(
                    Page(producer.head.id, stop, tuple(events[start:stop]), ended and stop == end)
                )
                page_start, start = start, stop
            marks.append((producer, end, page_start, ended))
        return heads, pages, marks

    async def _flush(self) -> bool:
        """Write what the dirty producers have that the log lacks; False if that failed."""
        if not self._dirty:
            return True
        heads, pages, marks = self._batch()
        self._dirty = {}
        try:
            await asyncio.to_thread(self.log.write, heads, pages)
            self._failures = 0
        except Exception:
            self._failures += 1
            if self._failures < _ATTEMPTS:
                logger.exception("stream log write failed; retrying")
                for producer, *_ in marks:
                    self._dirty[producer.head.id] = producer
                return False
            # Given up on this batch, so that it does not hold back every later one: these
            # streams' resumes will miss its events (their ids then skip; none repeats).
            logger.exception(
                "stream log write failed %s times; events lost to resume for streams %s",
                self._failures,
                ", ".join(p.head.id for p, *_ in marks),
            )
            self._failures = 0
        for producer, written, page_start, ended in marks:
            producer.head_written = True
            producer.written, producer.page_start = written, page_start
            if ended:
                producer.durable.set_result(None)
        return True

    async def _check_stops(self) -> None:
        try:
            stopped = await asyncio.to_thread(self.log.stopped, list(self._live))
        except Exception:
            logger.exception("could not check the stream log for stop requests")
            return
        for id in stopped:
            if (producer := self._live.get(id)) is not None:
                producer.cancel("stopped")

    async def aclose(self) -> None:
        """Stop the task, write what is left, close the log."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._flush()
        await asyncio.to_thread(self.log.close)
