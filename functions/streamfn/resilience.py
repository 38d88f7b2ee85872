"""Retries and fallbacks, before the first token only.

The commit point of a streamed response is its first byte: until then streamfn can try again,
try another provider, and still answer with a real HTTP status. So the first chunk of each
attempt decides: a retryable failure (429, 5xx, overloaded, a broken connection, no first token
in time) is retried with backoff, honouring the upstream's Retry-After up to a cap, then the
next candidate (`provider/model`) is tried; a failure that is not retryable (a bad request, a
refused key) ends it at once, as trying elsewhere would not help. All of it happens within the
first-token budget, of which each candidate gets an equal share of what is left (so that one
that never answers leaves its fallbacks time to). Once a first token has come, nothing is
retried: a failure after it is an `error` event, as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from streamfn.chunks import StreamChunk, StreamError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int  # tries again per candidate after its first failure
    base_s: float = 0.25  # the first backoff; doubled each time, with jitter
    max_wait_s: float = 4.0  # the longest single wait, Retry-After included


Open = Callable[[int, float], AsyncGenerator[StreamChunk, None]]
Failed = Callable[[StreamError, float | None], None]


def _unheard(_error: StreamError, _retry_in_s: float | None) -> None:
    pass


def backoff(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return retry_after
    return float(policy.base_s * 2**attempt * random.uniform(0.8, 1.2))


async def first_success(
    candidates: int,
    open_attempt: Open,
    policy: RetryPolicy,
    first_token_s: float,
    on_served: Callable[[int], None],
    *,
    on_failed: Failed = _unheard,
) -> AsyncGenerator[StreamChunk, None]:
    """The chunks of the first attempt that gets past its first chunk. `open_attempt(i,
    first_token_s)` opens candidate `i` with what is left of the first-token budget;
    `on_served(i)` is told which candidate answered, before its first chunk is passed on;
    `on_failed(error, retry_in_s)` that the attempt just opened failed before it, and whether
    the same candidate is tried again after `retry_in_s` (None: it is not), for its span."""
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + first_token_s
    failure: StreamError | None = None
    for index in range(candidates):
        for attempt in range(policy.retries + 1):
            left = ends_at - loop.time()
            if left <= 0:
                break
            # An equal share of what is left for this candidate and each one after it, so that
            # a provider that never answers leaves its fallbacks time to.
            share = left / (candidates - index)
            async with aclosing(open_attempt(index, share)) as stream:
                first = await anext(stream)
                if not isinstance(first, StreamError):
                    on_served(index)
                    yield first
                    async for chunk in stream:
                        yield chunk
                    return
            failure = first
            if not first.retryable:
                on_failed(first, None)
                yield first
                return
            wait = backoff(policy, attempt, first.retry_after)
            last_try = attempt == policy.retries
            if last_try or wait > policy.max_wait_s or wait >= ends_at - loop.time():
                on_failed(first, None)
                logger.info("candidate %d failed (%s): next candidate", index, first.type)
                break
            on_failed(first, wait)
            logger.info("candidate %d failed (%s): retrying in %.2f s", index, first.type, wait)
            await asyncio.sleep(wait)
    if failure is None:
        failure = StreamError(
            "timeout", "no provider answered within the first-token timeout", retryable=True
        )
    yield failure


def candidate_names(
    requested: Sequence[str], configured: dict[str, list[str]], provider: str, model: str
) -> list[str]:
    """The fallbacks to try after `provider/model`: the request's own if it names any, else
    those configured for `provider/model`, else for `provider`."""
    if requested:
        return list(requested)
    return list(configured.get(f"{provider}/{model}") or configured.get(provider) or [])
