"""Writes that wait for each other: what arrives within a few milliseconds, or while a batch is
being stored, goes in one batch, one transaction (one fsync for SQLite), on a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Batches(Generic[T]):
    """`write(item)` returns once `item` is stored, by `store(items)` (blocking, run in a worker
    thread) with every other item that came in the `window_s` after the first (or while the
    previous batch was being stored), in the order they came. A batch that fails is stored
    again one item at a time, so that each write gets its own item's outcome: one bad record
    does not lose the others.

    A request writes two records (opened as it reaches its provider, then settled), each a
    commit and an fsync of its own before; 1,000 streams ending together were 1,000 commits,
    each a worker thread's turn. Now requests close together share one. The window (10 ms by
    default) is how long a record may wait: what a crash could lose besides the commit itself.
    """

    def __init__(self, store: Callable[[Sequence[T]], None], window_s: float = 0.01) -> None:
        self._store = store
        self._window_s = window_s
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()
        self._pending.append((item, stored))
        flushing = self._flushing
        if flushing is None or flushing.done() or flushing.get_loop() is not loop:
            self._flushing = loop.create_task(self._flush())
        await stored

    async def drain(self) -> None:
        """Until what was written so far is stored (a store closing waits for it)."""
        flushing = self._flushing
        here = asyncio.get_running_loop()
        if flushing is not None and not flushing.done() and flushing.get_loop() is here:
            await asyncio.shield(flushing)

    async def _flush(self) -> None:
        await asyncio.sleep(self._window_s)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._store, [item for item, _ in batch])
            except Exception:
                await asyncio.to_thread(self._one_by_one, batch)
            else:
                for _, stored in batch:
                    if not stored.done():
                        stored.set_result(None)

    def _one_by_one(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        """In the worker thread: each item of a failed batch alone, its future told how it
        went (on its loop's thread)."""
        for item, stored in batch:
            try:
                self._store([item])
            except Exception as exc:
                outcome: BaseException | None = exc
            else:
                outcome = None
            stored.get_loop().call_soon_threadsafe(_settle, stored, outcome)


def _settle(stored: asyncio.Future[None], outcome: BaseException | None) -> None:
    if stored.done():
        return
    if outcome is None:
        stored.set_result(None)
    else:
        stored.set_exception(outcome)
