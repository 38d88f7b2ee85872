"""The Redis a fleet of servers shares (`STREAMFN_REDIS_URL`): one asyncio client per URL and
event loop, for every part that keeps its state there (limits, stream tokens, the stream log's
waits). Per event loop, because an asyncio connection belongs to the loop that opened it.

redis-py's asyncio client, with what its defaults leave open set explicitly: RESP3, and socket
timeouts, so that a Redis that stops answering fails a request in seconds (a 503) instead of
holding it for ever. Keys name their identity in a `{hash tag}`, so that one identity's keys
share a slot.

A URL is `redis://` or `rediss://` (TLS), as redis-py reads it, or, for a primary that Redis
Sentinel watches and fails over, `redis+sentinel://[[user]:password@]host:port[,host:port...]
/<service>[/<db>]` (the sentinels' addresses; the password is the primary's): redis-py asks the
sentinels for the primary, and again after a failover.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import redis
    from redis.asyncio import Redis

SENTINEL = "redis+sentinel"

# Long enough for a loaded server's answer, short enough that a dead one is a quick 503.
TIMEOUT_S = 2.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Redis]] = (
    weakref.WeakKeyDictionary()
)


_OPTIONS: dict[str, Any] = {
    "protocol": 3,
    "socket_timeout": TIMEOUT_S,
    "socket_connect_timeout": TIMEOUT_S,
    "health_check_interval": 30,
}


@dataclass(frozen=True, slots=True)
class SentinelURL:
    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None


def sentinel_url(url: str) -> SentinelURL | None:
    """A `redis+sentinel://` URL's parts; None for another scheme. `ValueError` if malformed."""
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    if scheme != SENTINEL:
        return None
    hosts, _, path = rest.partition("/")
    userinfo, at, hosts = hosts.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    sentinels = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        sentinels.append((name, int(port)) if colon else (host, 26379))
    service, _, db = path.strip("/").partition("/")
    if not service or not sentinels[0][0]:
        raise ValueError("a redis+sentinel:// URL names its sentinels and its service")
    return SentinelURL(
        sentinels,
        service,
        int(db or 0),
        unquote(username) or None,
        unquote(password) or None,
    )


def client(url: str) -> Redis:
    """The running loop's client for `url`, made on first use (it connects on its first
    command)."""
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    found = clients.get(url)
    if found is None:
        # imported on use: only a fleet needs it
        from redis.asyncio import Redis
        from redis.asyncio.sentinel import Sentinel

        sentinel = sentinel_url(url)
        if sentinel is None:
            found = Redis.from_url(url, **_OPTIONS)
        else:
            sentinels = Sentinel(sentinel.sentinels, **_sentinel_options())  # type: ignore[no-untyped-call]
            found = sentinels.master_for(sentinel.service, **_primary_options(sentinel))
        clients[url] = found
    return found


def blocking_client(url: str) -> redis.Redis:
    """A client for `url` whose commands block (the stream log's, run in worker threads)."""
    import redis
    from redis.sentinel import Sentinel

    sentinel = sentinel_url(url)
    if sentinel is None:
        return redis.Redis.from_url(url, **_OPTIONS)
    sentinels = Sentinel(sentinel.sentinels, **_sentinel_options())  # type: ignore[no-untyped-call]
    primary: redis.Redis = sentinels.master_for(sentinel.service, **_primary_options(sentinel))  # type: ignore[no-untyped-call]
    return primary


def _sentinel_options() -> dict[str, Any]:
    timeouts = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
    return {"sentinel_kwargs": timeouts, **timeouts}


def _primary_options(sentinel: SentinelURL) -> dict[str, Any]:
    options: dict[str, Any] = {**_OPTIONS, "db": sentinel.db}
    if sentinel.password is not None:
        options["password"] = sentinel.password
    if sentinel.username is not None:
        options["username"] = sentinel.username
    return options


def hash_tag(value: str) -> str:
    """`value` as a Redis Cluster hash tag: braces in it would end the tag early."""
    return "{" + value.replace("{", "(").replace("}", ")") + "}"


def where(url: str) -> str:
    """`url` without its password, for log lines and errors."""
    sentinel = sentinel_url(url)
    if sentinel is not None:
        hosts = ",".join(f"{host}:{port}" for host, port in sentinel.sentinels)
        return f"{SENTINEL}://{hosts}/{sentinel.service}/{sentinel.db}"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"
