"""The upstream connection pool: taking a connection and giving it back cost the same with
10,000 streams open as with one.

Every provider's HTTP client is httpx2's (the anthropic SDK's too), and its pool,
httpcore2's `AsyncConnectionPool`, reassigns every queued request over every connection on each
request and on each response's close (`_assign_requests_to_connections`: several checks per
connection). A streaming server keeps its connections busy for a stream's whole life, so with
1,000 streams open each request start and each close walked 1,000 busy connections: about 1 ms
a walk, the largest part of a request's cost then (py-spy, `make bench`'s "others open" row).

`StreamingPool` is that pool with its bookkeeping replaced: idle connections wait in a stack
per origin (the most recently used first, least likely to have been closed by the server) and
busy ones are never looked at. Everything else is httpcore2's: the connections themselves
(connect, TLS, HTTP/1.1), their expiry, the pool's limits and timeout. A proxied client's mounts
keep httpcore2's own pools (they are not the streaming path). Written here because no pool for
httpx does this; aiohttp's connector does, but every provider and SDK speaks httpx2.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator

import httpcore2
import httpx2

logger = logging.getLogger(__name__)

_Key = tuple[bytes, bytes, int]  # an origin's scheme, host and port


class StreamingPool(httpcore2.AsyncConnectionPool):
    """httpcore2's pool, its connections found in constant time: see the module."""

    def __init__(self, like: httpcore2.AsyncConnectionPool) -> None:
        # Every setting of the pool it replaces (limits, TLS, backend, retries, ...), as built
        # by httpx2 from the client's arguments.
        self.__dict__.update(like.__dict__)
        self._idle: dict[_Key, list[httpcore2.AsyncConnectionInterface]] = {}
        self._idle_count = 0
        self._busy: dict[httpcore2.AsyncConnectionInterface, _Key] = {}
        self._waiting: deque[asyncio.Future[None]] = deque()  # requests waiting for room

    @property
    def connections(self) -> list[httpcore2.AsyncConnectionInterface]:
        return [*self._busy, *(c for idle in self._idle.values() for c in idle)]

    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        if request.url.scheme not in (b"http", b"https"):
            scheme = request.url.scheme.decode()
            raise httpcore2.UnsupportedProtocol(f"unsupported protocol {scheme!r}")
        timeout = request.extensions.get("timeout", {}).get("pool")
        origin = request.url.origin
        while True:
            connection = await self._take(origin, timeout)
            try:
                response = await connection.handle_async_request(request)
            except httpcore2.ConnectionNotAvailable:
                # Taken as available, it was not (the server closed it meanwhile): another.
                await self._give_back(connection)
                continue
            except BaseException:
                await self._give_back(connection)
                raise
            assert isinstance(response.stream, AsyncIterable)
            return httpcore2.Response(
                status=response.status,
                headers=response.headers,
                content=_Lent(response.stream, connection, self),
                extensions=response.extensions,
            )

    async def _take(
        self, origin: httpcore2.Origin, wait_s: float | None
    ) -> httpcore2.AsyncConnectionInterface:
        key = (origin.scheme, origin.host, origin.port)  # an Origin is not hashable
        loop = asyncio.get_running_loop()
        deadline = None if wait_s is None else loop.time() + wait_s
        while True:
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()
                self._idle_count -= 1
                if connection.is_available() and not connection.has_expired():
                    self._busy[connection] = key
                    return connection
                await self._close_connections([connection])
            if len(self._busy) + self._idle_count < self._max_connections:
                connection = self.create_connection(origin)
                self._busy[connection] = key
                return connection
            if self._idle_count:  # room made by closing an idle connection to another origin
                await self._close_connections([self._evict()])
                continue
            waiter = loop.create_future()
            self._waiting.append(waiter)
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
                # that comes once the future is done.
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise httpcore2.PoolTimeout("no connection became free in time") from None
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the room it was given goes on
                raise
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)

    def _wake(self) -> None:
        """Room was made: the longest-waiting request looks again."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _evict(self) -> httpcore2.AsyncConnectionInterface:
        for idle in self._idle.values():
            if idle:
                self._idle_count -= 1
                return idle.pop(0)  # the one idle longest
        raise AssertionError("no idle connection to evict")

    async def _give_back(self, connection: httpcore2.AsyncConnectionInterface) -> None:
        """A request is done with `connection`: idle again, it waits for the next; closed, or
        one idle too many, it goes. The books are kept before anything is awaited."""
        key = self._busy.pop(connection, None)
        closing = []
        if key is None:  # the pool was closed meanwhile
            if not connection.is_closed():
                await self._close_connections([connection])
            return
        if (
            connection.is_idle()
            and not connection.is_closed()
            and self._idle_count < self._max_keepalive_connections
        ):
            idle = self._idle.setdefault(key, [])
            idle.append(connection)
            self._idle_count += 1
            if idle[0] is not connection and idle[0].has_expired():  # one at a time, in passing
                closing.append(idle.pop(0))
                self._idle_count -= 1
        elif not connection.is_closed():
            closing.append(connection)
        self._wake()
        if closing:
            await self._close_connections(closing)

    def __repr__(self) -> str:
        return f"<StreamingPool [{len(self._busy)} busy, {self._idle_count} idle]>"

    async def aclose(self) -> None:
        closing = self.connections
        self._busy.clear()
        self._idle.clear()
        self._idle_count = 0
        await self._close_connections(closing)


class _Lent:
    """A response's body, its connection given back to the pool when it is closed."""

    def __init__(
        self,
        stream: AsyncIterable[bytes],
        connection: httpcore2.AsyncConnectionInterface,
        pool: StreamingPool,
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._pool: StreamingPool | None = pool

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await pool._give_back(self._connection)


def streaming_pool(client: httpx2.AsyncClient) -> httpx2.AsyncClient:
    """`client`, its default transport's pool a `StreamingPool` (what it requests through a
    proxy keeps httpcore2's, as does an HTTP/2 client)."""
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    # HTTP/2 multiplexes requests over a connection, which this pool, lending each connection
    # to one request at a time, would not: such a client keeps httpcore2's.
    if type(pool) is httpcore2.AsyncConnectionPool and not getattr(pool, "_http2", False):
        transport._pool = StreamingPool(pool)  # type: ignore[union-attr]
    else:  # another transport (a test's, a proxy's), or HTTP/2: left as it is
        logger.debug("the client keeps its own pool: %r", pool)
    return client


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS configuration for every provider's client: what httpx2's `verify=True` builds
    (its CA store, SSL_CERT_FILE and SSL_CERT_DIR heeded), built once. Each build loads the CA
    store, about 25 ms (measured on the layer's packages), which every client paid at start,
    and again in each after-restore rebuild of a SnapStart environment."""
    return httpx2.create_ssl_context()


def streaming_client(
    *,
    total_timeout_s: float,
    connect_timeout_s: float,
    max_connections: int,
    base_url: str = "",
    headers: dict[str, str] | None = None,
) -> httpx2.AsyncClient:
    """A provider's httpx2 client for its streams, on a `StreamingPool`: room for
    `max_connections` streams at once (httpx2's default pool, 100, would queue the 101st behind
    the others), 100 idle connections kept."""
    return streaming_pool(
        httpx2.AsyncClient(
            base_url=base_url,
            headers=headers,
            verify=ssl_context(),
            timeout=httpx2.Timeout(total_timeout_s, connect=connect_timeout_s),
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=100),
        )
    )
