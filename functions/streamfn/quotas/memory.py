"""Limits counted in this process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamfn.quotas import Exceeded, Lease, Quota


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
            raise Exceeded.requests(identity, rpm, now)
        if streams is not None and counts.streams >= streams:
            raise Exceeded.streams(identity, streams)
        if daily is not None and counts.tokens + reserve_tokens > daily:
            raise Exceeded.tokens(identity, daily, reserve_tokens, counts.tokens, now)
        counts.requests += 1
        counts.streams += 1
        counts.tokens += reserve_tokens
        return _MemoryLease(counts, day, reserve_tokens)
