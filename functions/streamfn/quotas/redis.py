"""Limits counted in the Redis a fleet of servers shares (`STREAMFN_REDIS_URL`).

One admission is one Lua script, which Redis runs atomically
(https://redis.io/docs/latest/develop/interact/programmability/eval-intro/: "Redis guarantees
the script's atomic execution ... blocking all server activities during its entire runtime"),
on the server's clock (`TIME`), so that servers whose clocks differ still agree on the minute
and the day. Three keys per identity, sharing its hash tag:

- `streamfn:{<identity>}:counts`, a hash: the minute and its request count, the UTC day and its
  tokens (used, plus reserved by requests still running);
- `streamfn:{<identity>}:streams`, a sorted set of open streams' leases scored by their expiry
  (the longest stream plus a minute): a server killed mid-stream cannot hold a slot for ever,
  since expired leases are dropped before they are counted;
- `streamfn:{<identity>}:budget`, a hash: the budget's UTC day or month (`streamfn.quotas.
  period`, computed from `TIME` here too) and the nano-dollars spent in it, plus reserved by
  requests still running.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamfn.quotas import Exceeded, Lease, Quota, Unavailable, nanos
from streamfn.redis_connection import client, hash_tag, where

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("streamfn.quotas")

# The counts outlive their day by a day (a request still running at midnight settles into it).
_COUNTS_TTL_S = 2 * 86400

# The budget's period, as `streamfn.quotas.period` names it: `d<day>`, or `m<month>` (months
# since January 1970, from the day by Howard Hinnant's civil_from_days,
# https://howardhinnant.github.io/date_algorithms.html#civil_from_days).
_PERIOD = """
local function period(kind, day)
  if kind ~= 'month' then return 'd' .. day end
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return 'm' .. ((y - 1970) * 12 + m - 1)
end
"""

# ARGV: requests per minute, concurrent streams, tokens per day (-1: unlimited), tokens to
# reserve, the lease's id, its lifetime, the counts' lifetime, the budget in nano-dollars (-1:
# none), its period (day or month), the nano-dollars to reserve. Returns {verdict, now, count,
# period}: verdict 0 admitted (count: the UTC day its tokens were reserved in; period: the
# budget's, or ''), 1 the minute's requests are used up, 2 the streams are, 3 the day's tokens
# are (count: how many are used or reserved), 4 the budget is spent (count: the nano-dollars
# spent or reserved).
_ACQUIRE = (
    _PERIOD
    + """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local minute = math.floor(now / 60)
local day = math.floor(now / 86400)
local rpm, streams, daily = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reserve, lease_s = tonumber(ARGV[4]), tonumber(ARGV[6])
local budget, kind, reserve_nanos = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
local counts = redis.call('HMGET', KEYS[1], 'minute', 'requests', 'day', 'tokens')
local requests = 0
if tonumber(counts[1]) == minute then requests = tonumber(counts[2]) end
local tokens = 0
if tonumber(counts[3]) == day then tokens = tonumber(counts[4]) end
if rpm >= 0 and requests >= rpm then return {1, tostring(now), requests, ''} end
if streams >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local open = redis.call('ZCARD', KEYS[2])
  if open >= streams then return {2, tostring(now), open, ''} end
end
if daily >= 0 and tokens + reserve > daily then return {3, tostring(now), tokens, ''} end
local spending, spent = '', 0
if budget >= 0 then
  spending = period(kind, day)
  local held = redis.call('HMGET', KEYS[3], 'period', 'spent')
  if held[1] == spending then spent = tonumber(held[2]) end
  if spent >= budget then return {4, tostring(now), spent, spending} end
end
redis.call('HSET', KEYS[1], 'minute', minute, 'requests', requests + 1, 'day', day,
  'tokens', tokens + reserve)
redis.call('EXPIRE', KEYS[1], ARGV[7])
if streams >= 0 then
  redis.call('ZADD', KEYS[2], now + lease_s, ARGV[5])
  redis.call('EXPIRE', KEYS[2], math.ceil(lease_s) + 60)
end
if budget >= 0 then
  -- %d: a number past 1e14 would otherwise be written as 1e+14, which HINCRBY refuses.
  redis.call('HSET', KEYS[3], 'period', spending, 'spent',
    string.format('%d', spent + reserve_nanos))
  -- Outlives its period by a day at least (a request still running at its end settles in).
  if kind == 'month' then redis.call('EXPIRE', KEYS[3], 33 * 86400)
  else redis.call('EXPIRE', KEYS[3], 2 * 86400) end
end
return {0, tostring(now), day, spending}
"""
)

# ARGV: the lease's id, the day its tokens were reserved in, used minus reserved tokens, the
# budget's period its spend was reserved in ('' for none), spent minus reserved nano-dollars.
_RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'day')) == tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[3])
end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[3], 'period') == ARGV[4] then
  redis.call('HINCRBY', KEYS[3], 'spent', ARGV[5])
end
return 0
"""


def _limit(value: int | None) -> int:
    return -1 if value is None else value


@dataclass
class _RedisLease:
    quotas: RedisQuotas
    keys: list[str]
    lease_id: str
    day: int
    reserved: int
    period: str  # the budget's ('' without one)
    reserved_nanos: int
    released: bool = False

    async def release(self, used_tokens: int, spent_usd: float | None = None) -> None:
        if self.released:
            return
        self.released = True
        try:
            await self.quotas.run(
                _RELEASE,
                self.keys,
                [
                    self.lease_id,
                    self.day,
                    used_tokens - self.reserved,
                    self.period,
                    nanos(spent_usd) - self.reserved_nanos,
                ],
            )
        except Unavailable:
            # The slot lapses with its lease; the day's tokens and the budget keep the
            # reservation.
            logger.warning("could not release a lease in Redis: it lapses on its own")


class RedisQuotas:
    def __init__(self, url: str, *, lease_s: float, redis: Redis | None = None) -> None:
        self._url = url
        self._redis = redis  # None: the running loop's client for `url`
        self._where = where(url)
        self._lease_s = lease_s

    async def run(self, script: str, keys: list[str], args: list[Any]) -> list[Any]:
        from redis.exceptions import RedisError

        redis = self._redis if self._redis is not None else client(self._url)
        try:
            # EVALSHA, loading the script on first use (redis-py's Script).
            result: list[Any] = await redis.register_script(script)(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Redis at {self._where}: {type(exc).__name__}") from exc
        return result

    async def acquire(
        self, identity: str, quota: Quota, reserve_tokens: int, reserve_usd: float | None = None
    ) -> Lease:
        tag = hash_tag(identity)
        keys = [f"streamfn:{tag}:counts", f"streamfn:{tag}:streams", f"streamfn:{tag}:budget"]
        lease_id = secrets.token_hex(8)
        budget = -1 if quota.budget_usd is None else nanos(quota.budget_usd)
        reserve_nanos = nanos(reserve_usd) if budget >= 0 else 0
        verdict, now_text, count, spending = await self.run(
            _ACQUIRE,
            keys,
            [
                _limit(quota.requests_per_minute),
                _limit(quota.concurrent_streams),
                _limit(quota.tokens_per_day),
                reserve_tokens,
                lease_id,
                self._lease_s,
                _COUNTS_TTL_S,
                budget,
                quota.budget_period,
                reserve_nanos,
            ],
        )
        now = float(now_text)
        if verdict == 1:
            raise Exceeded.requests(identity, int(quota.requests_per_minute or 0), now)
        if verdict == 2:
            raise Exceeded.streams(identity, int(quota.concurrent_streams or 0))
        if verdict == 3:
            daily = int(quota.tokens_per_day or 0)
            raise Exceeded.tokens(identity, daily, reserve_tokens, int(count), now)
        if verdict == 4:
            raise Exceeded.budget(identity, quota, int(count), now)
        period = spending.decode() if isinstance(spending, bytes) else str(spending)
        return _RedisLease(self, keys, lease_id, int(count), reserve_tokens, period, reserve_nanos)
