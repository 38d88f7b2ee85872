"""The guard around a provider stream: timeouts, a size bound, a guaranteed ending, and closing
upstream.

Whatever a provider does, the guarded stream is deltas followed by exactly one `Finish` or
`StreamError`, and closing it (or its consumer being cancelled) closes the provider's stream,
which cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from streamfn.chunks import Finish, StreamChunk, StreamError, generated
from streamfn.watchdog import Watchdog

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Bounds:
    first_token_s: float
    idle_s: float
    total_s: float
    # Absolute `time.time()` by which the stream must have ended (Lambda's invocation deadline
    # less a margin); None where there is no such bound.
    deadline: float | None = None
    # The most characters of text, reasoning and tool-call arguments one stream may carry
    # (STREAMFN_MAX_STREAM_BYTES): what it holds in memory, in the log and on the wire grows
    # with them, whatever its reader does.
    max_chars: int | None = None


async def guard(
    source: AsyncGenerator[StreamChunk, None], timeouts: Bounds
) -> AsyncGenerator[StreamChunk, None]:
    """Yield `source`'s chunks within `timeouts`; always end with one final chunk.

    Any delta (text, reasoning, a tool call's piece) is progress: the first ends the
    first-token wait, and each restarts the idle timer. A stream past `max_chars` ends with a
    `too_large` error, and its upstream request is closed."""
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + timeouts.total_s
    ending = "the provider exceeded the total timeout"
    if timeouts.deadline is not None and timeouts.deadline - time.time() < timeouts.total_s:
        ends_at = loop.time() + timeouts.deadline - time.time()
        ending = "the stream was ended before the Lambda invocation deadline"
    started = False
    left = timeouts.max_chars
    watchdog = Watchdog(loop, ends_at)
    async with aclosing(source) as stream:
        try:
            while True:
                gap = timeouts.idle_s if started else timeouts.first_token_s
                if loop.time() >= ends_at:  # spent while the reader was busy
                    yield StreamError("timeout", ending, retryable=True)
                    return
                watchdog.start(gap)
                try:
                    chunk = await anext(stream)
                except asyncio.CancelledError:
                    if not watchdog.owns_cancellation():
                        raise
                    if watchdog.asked_at + gap > ends_at:
                        message = ending
                    else:
                        phase = "idle" if started else "first-token"
                        message = f"the provider exceeded the {phase} timeout"
                    yield StreamError("timeout", message, retryable=True)
                    return
                except StopAsyncIteration:
                    yield StreamError(
                        "upstream_error",
                        "the provider's stream ended without a finish",
                        retryable=True,
                    )
                    return
                except Exception:
                    # Providers translate upstream failures into StreamError chunks; reaching
                    # here is a bug. This is the one catch-all on the stream path: log it, tell
                    # the client.
                    logger.exception("provider stream failed")
                    yield StreamError("internal", "internal error in streamfn", retryable=False)
                    return
                finally:
                    watchdog.done()
                if left is not None:
                    left -= generated(chunk)
                    if left < 0:
                        yield StreamError(
                            "too_large",
                            f"the stream exceeded {timeouts.max_chars} characters "
                            "(STREAMFN_MAX_STREAM_BYTES)",
                            retryable=False,
                        )
                        return
                yield chunk
                if isinstance(chunk, Finish | StreamError):
                    return
                started = True
        finally:
            watchdog.stop()
