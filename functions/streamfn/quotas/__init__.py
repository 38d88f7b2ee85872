"""Per-identity limits, checked before any provider call: requests per minute, concurrent
streams, and tokens per day (input plus max_tokens reserved at the start, settled to the real
usage at the end). Beyond one: 429 with Retry-After.

The identity is the API key's (`key:<id>`), else the caller's address. Limits come from
settings, and a key's own limits (`streamfn keys create --rpm ...`) replace them for that key.
Three stores behind `Quotas`: `MemoryQuotas` counts in this process (`make run`, one
self-hosted process); `RedisQuotas` in the Redis a fleet of servers shares
(`STREAMFN_REDIS_URL`); `DynamoDBQuotas` in a table every process and Lambda environment shares
(`STREAMFN_LIMITS_TABLE`, which template.yaml sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streamfn.settings import Settings


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
    """A limit is reached: the request is refused with 429 and `Retry-After`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

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
    """One admitted request's hold on its identity's limits, released when it ends."""

    async def release(self, used_tokens: int) -> None: ...


class Quotas(Protocol):
    async def acquire(self, identity: str, quota: Quota, reserve_tokens: int) -> Lease:
        """Admit one request of `identity` reserving `reserve_tokens`, or raise `Exceeded`."""
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
