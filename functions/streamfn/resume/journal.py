"""The journal: a process's streams' events written to the durable log in batches.

One task for the whole process gathers for a tenth of a second whatever every stream produced,
then writes it in one call (a SQLite transaction, or BatchWriteItem calls of 25 items), so a
thousand streams cost a write per tick, not a write per token, and no write is on a token's path.
A stream's head goes with its first batch, and each batch's last page of a stream carries its
will (what ends it if its producer dies there).

Every `beat_s` (the log's) it also beats for the whole process, in one call: it renews the
leases of the streams produced here and the presence of the readers here of streams produced
elsewhere, and learns which of its streams were stopped or ended from another process, which
have readers elsewhere, and whether the producers of those it follows are alive. Every few
seconds it sweeps the log for streams whose producers died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from streamfn import memory
from streamfn.resume import Head, Page, StreamLog

if TYPE_CHECKING:
    from streamfn.resume.live import Streams
    from streamfn.resume.producer import Producer

logger = logging.getLogger(__name__)

_FLUSH_S = 0.1  # how long the journal gathers events before it writes a batch
_SWEEP_S = 5.0  # between two sweeps for dead producers' streams
_RETRY_S = 1.0  # after a failed write
_ATTEMPTS = 3  # writes of one batch before it is given up
# A page's characters: under DynamoDB's 400 KB item limit even at four UTF-8 bytes each. (A
# single event larger than that cannot be logged there; it is the only event of its page.)
_PAGE_CHARS = 90_000


class Journal:
    def __init__(
        self,
        log: StreamLog,
        streams: Streams,
        *,
        timeout_s: float,
        prompt_end: bool,
    ) -> None:
        self.log = log
        self._streams = streams  # whose producers and readers it beats for
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
        self._ended_since_trim = False

    def changed(self, producer: Producer) -> None:
        self._dirty[producer.head.id] = producer
        self.wake()

    def wake(self) -> None:
        """Something to write or to beat for: start the task if it is not running."""
        if self._task is None:
            # Its events are made with the journal: an app may be served by one event loop,
            # shut down, and served by another (a test client's lifespans).
            self._wakeup, self._urgent = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._write_loop())
        self._wakeup.set()

    def hurry(self) -> None:
        """Write the next batch without gathering for `_FLUSH_S` first."""
        self.wake()
        self._urgent.set()

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
        wakeup, next_beat, next_sweep = self._wakeup, 0.0, time.monotonic() + _SWEEP_S
        streams, beat_s = self._streams, self.log.beat_s
        while True:
            busy = bool(streams.live or streams.reading or streams.left)
            timeout = beat_s if busy else _SWEEP_S
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
            now = time.monotonic()
            if (streams.live or streams.reading or streams.left) and now >= next_beat:
                next_beat = now + beat_s
                await self._beat()
            if now >= next_sweep:
                next_sweep = now + _SWEEP_S
                try:
                    await streams.sweep()
                except Exception:
                    logger.exception("could not sweep the stream log for dead producers")
                if self._ended_since_trim:
                    # Streams have ended: what their events took can go back to the system.
                    self._ended_since_trim = False
                    await asyncio.to_thread(memory.release)

    def _batch(self) -> tuple[list[Head], list[Page], list[tuple[Producer, int, int, bool]]]:
        heads: list[Head] = []
        pages: list[Page] = []
        marks: list[tuple[Producer, int, int, bool]] = []
        for producer in self._dirty.values():
            ended = producer.ended and not producer.durable.done()
            if producer.lost:  # another process wrote its end: nothing more of it
                marks.append((producer, producer.count, producer.page_start, ended))
                continue
            if not producer.head_written:
                heads.append(producer.head)
            start, end = producer.written, producer.count
            page_start = producer.page_start
            if ended and start == end and end > 0:
                start = page_start  # nothing new since the last page: rewrite it, ended
            events = producer.between(start, end)
            will = () if ended else producer.will()
            offset = start
            while start < end:
                stop, size = start + 1, len(events[start - offset].data)
                while stop < end and size + len(events[stop - offset].data) <= _PAGE_CHARS:
                    size += len(events[stop - offset].data)
                    stop += 1
                last = stop == end
                pages.append(
                    Page(
                        producer.head.id,
                        stop,
                        tuple(events[start - offset : stop - offset]),
                        ended and last,
                        will if last else (),
                        producer.chars,
                    )
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
            producer.persisted()
            if ended:
                producer.durable.set_result(None)
                self._ended_since_trim = True
        return True

    async def _beat(self) -> None:
        streams = self._streams
        producing = [id for id, p in streams.live.items() if p.head_written]
        reading = list(streams.reading)
        left = [id for id in streams.left if id not in streams.reading]
        streams.left.clear()
        try:
            beat = await asyncio.to_thread(self.log.beat, producing, reading, time.time(), left)
        except Exception:
            logger.exception("stream log heartbeat failed")
            return
        streams.leases.update((id, beat.leases.get(id)) for id in reading if id in streams.reading)
        streams.heard(beat.stopped, beat.lost, beat.read)

    async def aclose(self) -> None:
        """Stop the task, write what is left, close the log."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._flush()
        await asyncio.to_thread(self.log.close)
