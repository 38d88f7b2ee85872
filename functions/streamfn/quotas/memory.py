"""Limits counted in this process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamfn.quotas import Exceeded, Lease, Quota, nanos, period


@dataclass
class _Counts:
    minute: int = -1
    requests: int = 0
    streams: int = 0
    day: int = -1
    tokens: int = 0  # used, plus reserved by requests still running
    period: str = ""  # the budget's day or month (`streamfn.quotas.period`)
    spent: int = 0  # nano-dollars spent, plus reserved by requests still running


@dataclass
class _MemoryLease:
    counts: _Counts
    day: int
    reserved: int
    period: str | None  # set when the identity has a budget
    reserved_nanos: int
    released: bool = False

    async def release(self, used_tokens: int, spent_usd: float | None = None) -> None:
        if self.released:
            return
        self.released = True
        self.counts.streams -= 1
        if self.counts.day == self.day:  # yesterday's reservation is gone with yesterday
            self.counts.tokens += used_tokens - self.reserved
        if self.period is not None and self.counts.period == self.period:
            self.counts.spent += nanos(spent_usd) - self.reserved_nanos


@dataclass
class MemoryQuotas:
    """Counts in this process (one event loop: no locks needed between awaits)."""

    _counts: dict[str, _Counts] = field(default_factory=dict)

    async def acquire(
        self, identity: str, quota: Quota, reserve_tokens: int, reserve_usd: float | None = None
    ) -> Lease:
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
        budget = None if quota.budget_usd is None else nanos(quota.budget_usd)
        spending = period(quota.budget_period, now)[0] if budget is not None else None
        if spending is not None and counts.period != spending:
            counts.period, counts.spent = spending, 0
        if rpm is not None and counts.requests >= rpm:
            raise Exceeded.requests(identity, rpm, now)
        if streams is not None and counts.streams >= streams:
            raise Exceeded.streams(identity, streams)
        if daily is not None and counts.tokens + reserve_tokens > daily:
            raise Exceeded.tokens(identity, daily, reserve_tokens, counts.tokens, now)
        if budget is not None and counts.spent >= budget:
            raise Exceeded.budget(identity, quota, counts.spent, now)
        reserve_nanos = nanos(reserve_usd) if budget is not None else 0
        counts.requests += 1
        counts.streams += 1
        counts.tokens += reserve_tokens
        counts.spent += reserve_nanos
        return _MemoryLease(counts, day, reserve_tokens, spending, reserve_nanos)
