"""The Redis a fleet of servers shares (`STREAMFN_REDIS_URL`): one asyncio client per URL and
event loop, for every part that keeps its state there (limits, stream tokens, the stream log's
waits). Per event loop, because an asyncio connection belongs to the loop that opened it.

redis-py's asyncio client, with what its defaults leave open set explicitly: RESP3, and socket
timeouts, so that a Redis that stops answering fails a request in seconds (a 503) instead of
holding it for ever. Keys name their identity in a `{hash tag}`, so that one identity's keys
share a slot when the server is a Cluster.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Long enough for a loaded server's answer, short enough that a dead one is a quick 503.
TIMEOUT_S = 2.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Redis]] = (
    weakref.WeakKeyDictionary()
)


def client(url: str) -> Redis:
    """The running loop's client for `url`, made on first use (it connects on its first
    command)."""
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    found = clients.get(url)
    if found is None:
        from redis.asyncio import Redis  # imported on use: only a fleet needs it

        found = clients[url] = Redis.from_url(
            url,
            protocol=3,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            health_check_interval=30,
        )
    return found


def hash_tag(value: str) -> str:
    """`value` as a Redis Cluster hash tag: braces in it would end the tag early."""
    return "{" + value.replace("{", "(").replace("}", ")") + "}"


def where(url: str) -> str:
    """`url` without its password, for log lines and errors."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"
