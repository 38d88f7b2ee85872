"""Memory: the collector kept off what start-up made, and freed memory handed back to the
system once streams have ended.

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
import logging
from functools import cache

logger = logging.getLogger(__name__)


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


_frozen = False


def freeze_start_up() -> None:
    """Leave what start-up made (modules, the app, its clients: over 100,000 objects, alive as
    long as the process) out of every later collection, once per process. A full collection
    walks every tracked object: with 1,000 streams open one held the event loop for 150 to
    190 ms, and about half of that was these objects (`make bench`'s loop stall). No collection
    first: the garbage start-up leaves is a few dozen objects (frozen, they are never freed),
    and a full collection here would lengthen a cold start by some 70 ms. gc.freeze() is a list
    splice (https://docs.python.org/3/library/gc.html#gc.freeze); with SnapStart the snapshot
    is taken after it."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()
