"""Timeouts on many short waits at the cost of one timer."""

from __future__ import annotations

import asyncio
import math


class Watchdog:
    """One timer per stream rather than a timeout object per wait (which was a tenth of the
    cost of a token at full speed): it wakes when the wait in progress would be over, and
    cancels the waiting task only if that wait is still going on; otherwise it sleeps again
    until the wait now in progress would be over. Cancelling and then `uncancel`ling is what
    `asyncio.timeout` does, once per wait."""

    __slots__ = ("asked_at", "ends_at", "fired", "fired_on", "gap", "handle", "loop", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, ends_at: float = math.inf) -> None:
        self.loop = loop
        self.ends_at = ends_at
        self.gap = 0.0
        self.asked_at = 0.0
        self.waiter: asyncio.Task[object] | None = None  # the task waiting for a chunk, if one is
        self.fired = False
        self.fired_on: asyncio.Task[object] | None = None  # the task it cancelled, if it fired
        self.handle: asyncio.TimerHandle | None = None

    def start(self, gap: float) -> None:
        """A wait starts, in the current task, for at most `gap` seconds."""
        self.gap = gap
        self.asked_at = self.loop.time()
        self.waiter = asyncio.current_task()
        due = min(self.asked_at + gap, self.ends_at)
        if self.handle is not None and self.handle.when() > due:  # a shorter wait than before
            self.handle.cancel()
            self.handle = None
        if self.handle is None:
            self.handle = self.loop.call_at(due, self._check)

    def _check(self) -> None:
        self.handle = None
        due = min(self.asked_at + self.gap, self.ends_at)
        if self.waiter is None:  # not waiting: check again when a wait begun now would end
            due = min(self.loop.time() + self.gap, self.ends_at)
        elif self.loop.time() >= due:
            self.fired, self.fired_on = True, self.waiter
            self.waiter.cancel()
            return
        self.handle = self.loop.call_at(due, self._check)

    def owns_cancellation(self) -> bool:
        """Whether the cancellation the current task is handling is this watchdog's alone; if
        so it is withdrawn (`uncancel`), as `asyncio.timeout` does, and the caller turns it into
        its timeout. False: someone else's too (the client left, the server stops): re-raise."""
        task = asyncio.current_task()
        if not self.fired or task is None or task is not self.fired_on:
            return False  # it fired on another task, or for an earlier wait: not this one's
        self.fired, self.fired_on = False, None
        return task.uncancel() == 0

    def done(self) -> None:
        """The wait is over (it ended, failed or was cancelled)."""
        self.waiter = None

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
