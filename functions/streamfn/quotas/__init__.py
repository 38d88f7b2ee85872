"""Per-identity limits, checked before any provider call: requests per minute, concurrent
streams, and tokens per day (input plus max_tokens reserved at the start, settled to the real
usage at the end). Beyond one: 429 with Retry-After.

The identity is the API key's (`key:<id>`), else the caller's address. Limits come from
settings, and a key's own limits (`streamfn keys create --rpm ...`) replace them for that key.
Three stores behind `Quotas`: `MemoryQuotas` counts in this process (`make run`, one
self-hosted process); `RedisQuotas` in the Redis a fleet of servers shares
(`STREAMFN_REDIS_URL`); `DynamoDBQuotas` in a table every process and Lambda environment shares
(`STREAMFN_LIMITS_TABLE`, which template.yaml sets).

Budgets are counted beside them, per UTC day or month, in nano-dollars (integers, so that every
store adds them exactly and atomically): a request is admitted while what its identity spent,
plus what the requests still running reserved, is under the budget; it reserves what it could
cost at most (`streamfn.prices.Prices.most`: its input and max_tokens), and its end settles the
reservation to what it did cost. So the last request admitted may take the spend past the
budget, by at most what it reserved, and the next is refused (429 `budget_exceeded`, with
Retry-After the end of the day or month). A model with no known price reserves nothing and
costs nothing here: the budget does not see it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from streamfn.prices import usd

if TYPE_CHECKING:
    from streamfn.settings import Settings

BudgetPeriod: TypeAlias = Literal["day", "month"]
NANOS = 10**9  # nano-dollars in a dollar: budgets are counted in them


def nanos(usd: float | None) -> int:
    """`usd` in nano-dollars (0 for None: a cost not known is not counted)."""
    return 0 if usd is None else round(Decimal(repr(usd)) * NANOS)


def period(kind: BudgetPeriod, now: float) -> tuple[str, float]:
    """The UTC day or month `now` is in, as budgets name it (`d<days since 1970>`,
    `m<months since January 1970>`), and the seconds until it ends."""
    if kind == "day":
        day = int(now // 86400)
        return f"d{day}", (day + 1) * 86400 - now
    at = datetime.fromtimestamp(now, UTC)
    month = (at.year - 1970) * 12 + at.month - 1
    following = datetime(1970 + (month + 1) // 12, (month + 1) % 12 + 1, 1, tzinfo=UTC)
    return f"m{month}", following.timestamp() - now


@dataclass(frozen=True, slots=True)
class Quota:
    requests_per_minute: int | None = None
    concurrent_streams: int | None = None
    tokens_per_day: int | None = None
    budget_usd: float | None = None  # what the identity may spend per `budget_period`
    budget_period: BudgetPeriod = "day"

    def overridden(self, limits: Mapping[str, Any]) -> Quota:
        """This quota with a key's own limits in place of the defaults it names (a key's
        budget comes with its own period: a day unless it says)."""
        budget, kind = self.budget_usd, self.budget_period
        if "budget_usd" in limits:
            budget, kind = limits["budget_usd"], limits.get("budget_period", "day")
        return Quota(
            limits.get("requests_per_minute", self.requests_per_minute),
            limits.get("concurrent_streams", self.concurrent_streams),
            limits.get("tokens_per_day", self.tokens_per_day),
            budget,
            kind,
        )

    @property
    def unlimited(self) -> bool:
        return (
            self.requests_per_minute is None
            and self.concurrent_streams is None
            and self.tokens_per_day is None
            and self.budget_usd is None
        )


class Exceeded(Exception):
    """A limit is reached: the request is refused with 429 and `Retry-After`. `type` is the
    error type the client sees: `rate_limit`, or `budget_exceeded`."""

    def __init__(self, message: str, retry_after_s: float, type: str = "rate_limit") -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.type = type

    @classmethod
    def budget(cls, identity: str, quota: Quota, spent_nanos: int | None, now: float) -> Exceeded:
        when = "today" if quota.budget_period == "day" else "this month"
        spent = "" if spent_nanos is None else f": ${spent_nanos / NANOS:.6f} spent or reserved"
        return cls(
            f"{identity} has spent its budget of ${usd(quota.budget_usd or 0)} {when} (UTC){spent}",
            period(quota.budget_period, now)[1],
            "budget_exceeded",
        )

    @classmethod
    def requests(cls, identity: str, rpm: int, now: float) -> Exceeded:
        return cls(f"{identity} made {rpm} requests this minute", 60 - now % 60)

    @classmethod
    def streams(cls, identity: str, streams: int) -> Exceeded:
        return cls(f"{identity} has {streams} streams open already", 1)

    @classmethod
    def tokens(
        cls, identity: str, daily: int, reserve: int, used: int | None, now: float
    ) -> Exceeded:
        counted = f", {used} are used or reserved" if used is not None else ""
        return cls(
            f"{identity} would exceed {daily} tokens today (UTC): this request reserves "
            f"{reserve} (input and max_tokens){counted}",
            86400 - now % 86400,
        )


class Unavailable(Exception):
    """The shared limits store cannot be reached: the request is refused (503), never let
    through uncounted."""


class Lease(Protocol):
    """One admitted request's hold on its identity's limits, released when it ends with the
    tokens it used and what it cost (None: not known, so not counted)."""

    async def release(self, used_tokens: int, spent_usd: float | None = None) -> None: ...


class Quotas(Protocol):
    async def acquire(
        self, identity: str, quota: Quota, reserve_tokens: int, reserve_usd: float | None = None
    ) -> Lease:
        """Admit one request of `identity` reserving `reserve_tokens` and `reserve_usd` (what
        it could cost at most; None: not known), or raise `Exceeded`."""
        ...


def from_settings(settings: Settings) -> Quotas:
    """The shared Redis or table when one is configured, else counts in this process."""
    if settings.redis_url:
        from streamfn.quotas.redis import RedisQuotas

        return RedisQuotas(
            settings.redis_url.get_secret_value(), lease_s=settings.total_timeout_s + 60
        )
    if settings.limits_table:
        from streamfn.quotas.dynamodb import DynamoDBQuotas

        return DynamoDBQuotas(settings.limits_table, lease_s=settings.total_timeout_s + 60)
    from streamfn.quotas.memory import MemoryQuotas

    return MemoryQuotas()
