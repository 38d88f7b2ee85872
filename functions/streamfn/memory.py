"""Handing freed memory back to the system once streams have ended.

A stream's events are many strings of a few kilobytes; Python frees them to the C allocator,
and glibc's keeps what it freed inside its heaps (and its worker threads' arenas) rather than
returning it, so a server's resident memory stays at its peak long after the streams that made
it have gone. `malloc_trim(0)` returns those free pages. It is glibc's alone: elsewhere (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
