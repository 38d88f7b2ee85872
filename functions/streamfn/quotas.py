"""Per-identity limits, checked before any provider call: requests per minute, concurrent
streams, and tokens per day (input plus max_tokens reserved at the start, settled to the real
usage at the end). Beyond one: 429 with Retry-After.

The identity is the API key's (`key:<id>`), else the caller's address. Limits come from
settings, and a key's own limits (`streamfn keys create --rpm ...`) replace them for that key.
`MemoryQuotas` keeps the counts in this process: right for `make run` and one self-hosted
process; several processes or Lambda environments need a shared store behind `Quotas`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Quota:
    requests_per_minute: int | None = None
    concurrent_streams: int | None = None
    tokens_per_day: int | None = None

    def overridden(self, limits: Mapping[str, Any]) -> Quota:
        """This quota with a key's own limits in place of the defaults it names."""
        return Quota(
            limits.get("requests_per_minute", self.requests_per_minute),
            limits.get("concurrent_streams", self.concurrent_streams),
            limits.get("tokens_per_day", self.tokens_per_day),
        )

    @property
    def unlimited(self) -> bool:
        return self == Quota()


class Exceeded(Exception):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class Lease(Protocol):
    """One admitted request's hold on its identity's limits, released when it ends."""

    async def release(self, used_tokens: int) -> None: ...


class Quotas(Protocol):
    async def acquire(self, identity: str, quota: Quota, reserve_tokens: int) -> Lease:
        """Admit one request of `identity` reserving `reserve_tokens`, or raise `Exceeded`."""
        ...


@dataclass
class _Counts:
    minute: int = -1
    requests: int = 0
    streams: int = 0
    day: int = -1
    tokens: int = 0  # used, plus reserved by requests still running


@dataclass
class _MemoryLease:
    counts: _Counts
    day: int
    reserved: int
    released: bool = False

    async def release(self, used_tokens: int) -> None:
        if self.released:
            return
        self.released = True
        self.counts.streams -= 1
        if self.counts.day == self.day:  # yesterday's reservation is gone with yesterday
            self.counts.tokens += used_tokens - self.reserved


@dataclass
class MemoryQuotas:
    """Counts in this process (one event loop: no locks needed between awaits)."""

    _counts: dict[str, _Counts] = field(default_factory=dict)

    async def acquire(self, identity: str, quota: Quota, reserve_tokens: int) -> Lease:
        now = time.time()
        minute, day = int(now // 60), int(now // 86400)
        counts = self._counts.setdefault(identity, _Counts())
        if counts.minute != minute:
            counts.minute, counts.requests = minute, 0
        if counts.day != day:
            counts.day, counts.tokens = day, 0
        rpm, streams, daily = (
            quota.requests_per_minute,
            quota.concurrent_streams,
            quota.tokens_per_day,
        )
        if rpm is not None and counts.requests >= rpm:
            raise Exceeded(f"{identity} made {rpm} requests this minute", 60 - now % 60)
        if streams is not None and counts.streams >= streams:
            raise Exceeded(f"{identity} has {streams} streams open already", 1)
        if daily is not None and counts.tokens + reserve_tokens > daily:
            raise Exceeded(
                f"{identity} would exceed {daily} tokens today (UTC): this request reserves "
                f"{reserve_tokens} (input and max_tokens), {counts.tokens} are used or reserved",
                86400 - now % 86400,
            )
        counts.requests += 1
        counts.streams += 1
        counts.tokens += reserve_tokens
        return _MemoryLease(counts, day, reserve_tokens)
