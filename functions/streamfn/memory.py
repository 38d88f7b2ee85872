"""Memory: the collector kept off what has lived through a full collection, and freed memory
handed back to the system once streams have ended.

A stream's events are many strings of a few kilobytes; Python frees them to the C allocator,
and glibc's keeps what it freed inside its heaps (and its worker threads' arenas) rather than
returning it, so a server's resident memory stays at its peak long after the streams that made
it have gone. `malloc_trim(0)` returns those free pages. It is glibc's alone: elsewhere (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from functools import cache
from typing import Any


@cache
def _trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release() -> None:
    """Return the allocator's free memory to the system, where it can; it blocks for a few
    milliseconds per hundred megabytes, so callers run it in a worker thread."""
    trim = _trim()
    if trim is not None:
        trim(0)


# Objects frozen beyond the count after the last reclaim (and at least as many again) at which
# the next full collection walks them all, for what died in a cycle since it was frozen.
RECLAIM_GROWTH = 1_000_000
CHECK_EVERY_S = 10.0  # counting the frozen objects walks their list: about 4 ms a million
FULL_EVERY = 2  # middle-generation collections to a full one (gc.set_threshold's third)


class _Tenure:
    """Called by the collector after each collection (`gc.callbacks`): after a full one, what
    survived it is frozen, so that the next full collection walks only what has come since.

    A full collection walks every tracked object. With 1,000 streams open that is some 400,000
    objects (start-up's 140,000 besides), and one held the event loop for 70 to 190 ms: the
    longest stall a busy server had (`make bench`). CPython runs one whenever objects promoted
    since the last have grown by a quarter of those that survived it, so a server with many
    streams open ran one every few seconds, walking them all each time. Frozen, what is alive
    is left out (https://docs.python.org/3/library/gc.html#gc.freeze: a list splice), and a
    full collection costs what was made since the last one.

    Frozen objects are still freed by reference counting; what the collector alone frees, an
    unreachable cycle, stays frozen until a reclaim. A stream leaves no such cycle (the tests
    hold it to that), but an error may, so when the frozen objects have doubled since the last
    reclaim (and grown by `growth` at least), checked at most every ten seconds, they are all
    unfrozen and the next full collection walks everything, once (that one is long: over a
    million objects, several hundred milliseconds, as rare as the frozen set's doubling).

    What a full collection walks is then what survived the younger collections since the last:
    with a full collection every second middle one (`FULL_EVERY`, CPython's default 10), at
    most some 14,000 objects, 10 ms, where 1,000 streams opening at once made one of 48 ms."""

    def __init__(self, growth: int, check_every_s: float) -> None:
        self.growth = growth
        self.check_every_s = check_every_s
        self.base = gc.get_freeze_count()
        self.checked = time.monotonic()
        self.reclaiming = False

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        gc.freeze()
        if self.reclaiming:  # that collection walked everything: count from here
            self.reclaiming = False
            self.base = gc.get_freeze_count()
            return
        now = time.monotonic()
        if now - self.checked < self.check_every_s:
            return
        self.checked = now
        frozen = gc.get_freeze_count()
        if frozen > max(2 * self.base, self.base + self.growth):
            # Nothing logged here: a collection may run inside a logging handler's write.
            gc.unfreeze()
            self.reclaiming = True


_tenure: _Tenure | None = None


def freeze_start_up(growth: int = RECLAIM_GROWTH, check_every_s: float = CHECK_EVERY_S) -> None:
    """Leave what start-up made (modules, the app, its clients: over 100,000 objects, alive as
    long as the process) out of every later collection, and from then on what survives each
    full collection (`_Tenure`); once per process. No collection first: the garbage start-up
    leaves is a few dozen objects, and a full collection here would lengthen a cold start by
    some 70 ms. With SnapStart the snapshot is taken after it."""
    global _tenure
    if _tenure is None:
        gc.freeze()
        _tenure = _Tenure(growth, check_every_s)
        gc.callbacks.append(_tenure)
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_EVERY)
