"""Stored responses in the Redis a fleet of servers shares (`STREAMFN_REDIS_URL`), beside the
stream log: each is a hash, `streamfn:{<id>}:response` (its id as the hash tag, as the stream
log's keys have theirs), of `owner`, `created_at` and `body`, expiring with its retention.

Reads and deletes check the owner inside Lua scripts, which Redis runs atomically
(https://redis.io/docs/latest/develop/interact/programmability/eval-intro/), so that another
identity's request neither gets the body over the wire nor deletes it between a check and a
`DEL`. A put replaces the hash whole in one `MULTI` (delete, write, expire).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from streamfn.redis_connection import client, hash_tag, where
from streamfn.stored import Stored, StoredUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

T = TypeVar("T")

# KEYS: the response. ARGV: the owner. {created_at, body} if it is the owner's, else nil.
_GET = """
local found = redis.call('HMGET', KEYS[1], 'owner', 'created_at', 'body')
if found[1] ~= ARGV[1] then return false end
return {found[2], found[3]}
"""

# KEYS: the response. ARGV: the owner. 1 if deleted, 0 if not there or another's.
_DELETE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


def _key(id: str) -> str:
    return f"streamfn:{hash_tag(id)}:response"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisResponses:
    """On the running loop's client for the URL (`redis_connection.client`), shared with the
    rest of the process's Redis state, unless given one (`redis`): closing this store leaves
    either open."""

    def __init__(self, url: str, *, ttl_s: float, redis: Redis | None = None) -> None:
        self._url = url
        self._where = where(url)
        self._ttl_s = ttl_s
        self._redis = redis

    async def _run(self, work: Callable[[Redis], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        try:
            return await work(self._redis if self._redis is not None else client(self._url))
        except (RedisError, OSError) as exc:
            raise StoredUnavailable(
                f"stored responses cannot be reached just now (Redis at {self._where}: "
                f"{type(exc).__name__})"
            ) from exc

    async def prepare(self) -> None:
        await self._run(lambda redis: redis.ping())
        logger.info("responses are stored in Redis at %s", self._where)

    async def put(self, stored: Stored, *, ttl_s: float) -> None:
        key = _key(stored.id)
        ttl_ms = max(1, math.ceil(min(ttl_s, self._ttl_s) * 1000))

        async def put(redis: Redis) -> None:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(
                    key,
                    mapping={
                        "owner": stored.owner,
                        "created_at": repr(stored.created_at),
                        "body": stored.body,
                    },
                )
                pipe.pexpire(key, ttl_ms)
                await pipe.execute()

        await self._run(put)

    async def get(self, id: str, owner: str) -> Stored | None:
        async def get(redis: Redis) -> Any:
            return await redis.register_script(_GET)(keys=[_key(id)], args=[owner])

        found = await self._run(get)
        if not found:
            return None
        created_at, body = found
        return Stored(id, owner, float(_text(created_at)), _text(body))

    async def delete(self, id: str, owner: str) -> bool:
        async def delete(redis: Redis) -> Any:
            return await redis.register_script(_DELETE)(keys=[_key(id)], args=[owner])

        return bool(await self._run(delete))

    async def aclose(self) -> None:
        pass
