"""The upstream connection pool (providers/pool.py) against a real HTTP/1.1 server on loopback:
connections reused, limits kept, broken ones never handed out."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from streamfn.providers.anthropic_messages import AnthropicProvider
from streamfn.providers.bedrock.provider import BedrockProvider
from streamfn.providers.gemini.provider import GeminiProvider
from streamfn.providers.ollama_chat import OllamaProvider
from streamfn.providers.openai_chat import OpenAIChatProvider
from streamfn.providers.pool import StreamingPool, ssl_context, streaming_pool


class Server:
    """HTTP/1.1 with keep-alive: `GET /?hold=1` sends its headers and one chunk and then waits
    until `release` is set; anything else is answered at once. With `drop_idle`, a connection
    is closed by the server 50 ms after each answer (as a server's keep-alive timeout does)."""

    def __init__(self, *, drop_idle: bool = False) -> None:
        self.connections = 0
        self.release = asyncio.Event()
        self.drop_idle = drop_idle
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                hold = b"hold=1" in head.split(b"\r\n", 1)[0]
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                    b"transfer-encoding: chunked\r\n\r\n3\r\none\r\n"
                )
                await writer.drain()
                if hold:
                    await self.release.wait()
                writer.write(b"3\r\ntwo\r\n0\r\n\r\n")
                await writer.drain()
                if self.drop_idle:
                    await asyncio.sleep(0.05)
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went, or the test is over
        finally:
            writer.close()


def client(**limits: int) -> httpx2.AsyncClient:
    return streaming_pool(
        httpx2.AsyncClient(
            limits=httpx2.Limits(
                **{"max_connections": 100, "max_keepalive_connections": 10, **limits}
            ),
            timeout=httpx2.Timeout(5, pool=0.3),
        )
    )


async def hold(http: httpx2.AsyncClient, url: str) -> httpx2.Response:
    """A response whose body waits for the server's `release`."""
    return await http.send(http.build_request("GET", f"{url}/?hold=1"), stream=True)


def test_every_provider_client_gets_the_pool() -> None:
    timeouts = {"total_timeout_s": 5.0, "connect_timeout_s": 1.0}
    local = "http://127.0.0.1:1"
    providers = [
        OpenAIChatProvider(
            name="openai",
            api_key="k",
            base_url=local,
            max_tokens_param="max_tokens",
            **timeouts,
        ),
        AnthropicProvider(
            api_key="k", base_url=local, default_max_tokens=10, max_retries=0, **timeouts
        ),
        GeminiProvider(api_key="k", base_url=local, **timeouts),
        BedrockProvider(region="us-west-2", endpoint=local, bearer_token="k", **timeouts),
        OllamaProvider(host=local, api_key=None, **timeouts),
    ]
    contexts = set()
    for provider in providers:
        holder = getattr(provider, "_http", provider)  # OpenAI's: its OpenAIHTTP's client
        http = holder._client
        http = getattr(http, "_client", http)  # an SDK's client holds its httpx2 client
        assert isinstance(http._transport._pool, StreamingPool), provider
        contexts.add(id(http._transport._pool._ssl_context))
    # One TLS configuration for all: each would otherwise load the CA store (~25 ms a client).
    assert contexts == {id(ssl_context())}


async def test_requests_one_after_another_share_one_connection() -> None:
    server = Server()
    async with server as url, client() as http:
        for _ in range(5):
            assert (await http.get(url)).text == "onetwo"
    assert server.connections == 1


async def test_a_connection_is_reused_and_open_streams_each_hold_one() -> None:
    server = Server()
    async with server as url, client(max_keepalive_connections=3) as http:
        await http.get(url)
        assert server.connections == 1
        held = [await hold(http, url) for _ in range(5)]
        assert server.connections == 5  # the idle one, and four new
        server.release.set()
        for response in held:
            await response.aread()
            await response.aclose()
        pool = http._transport._pool  # type: ignore[attr-defined]
        assert repr(pool) == "<StreamingPool [0 busy, 3 idle]>"  # the keep-alive bound
        for _ in range(3):
            assert (await http.get(url)).text == "onetwo"
        assert server.connections == 5


async def test_at_the_connection_limit_a_request_waits_for_one_then_times_out() -> None:
    server = Server()
    async with server as url, client(max_connections=2) as http:
        held = [await hold(http, url) for _ in range(2)]
        third = asyncio.create_task(http.get(url))
        await asyncio.sleep(0.1)
        assert not third.done()  # waiting for room
        await held[0].aclose()  # closed before its end: its connection goes, room is made
        assert (await asyncio.wait_for(third, 2)).text == "onetwo"
        more = await hold(http, url)  # both taken again: nothing frees within the 0.3 s
        with pytest.raises(httpx2.PoolTimeout):
            await http.get(url)
        server.release.set()
        for response in (held[1], more):
            await response.aread()
            await response.aclose()
        assert server.connections == 3


async def test_a_connection_the_server_closed_while_idle_is_not_handed_out() -> None:
    server = Server(drop_idle=True)
    async with server as url, client() as http:
        for _ in range(3):
            assert (await http.get(url)).text == "onetwo"
            await asyncio.sleep(0.15)  # the server has closed it meanwhile
        assert server.connections == 3


async def test_at_the_limit_a_connection_given_back_goes_to_the_request_waiting() -> None:
    server = Server()
    async with server as url, client(max_connections=1) as http:
        held = await hold(http, url)
        waiting = asyncio.create_task(http.get(url))
        await asyncio.sleep(0.05)
        server.release.set()
        await held.aread()
        await held.aclose()  # idle again: the waiting request takes it, no new connection
        assert (await asyncio.wait_for(waiting, 2)).text == "onetwo"
        assert server.connections == 1


async def test_room_given_to_a_request_cancelled_meanwhile_goes_to_the_next() -> None:
    server = Server()
    async with server as url, client(max_connections=1) as http:
        held = await hold(http, url)
        first = asyncio.create_task(http.get(url))
        second = asyncio.create_task(http.get(url))
        await asyncio.sleep(0.05)  # both wait for room
        server.release.set()
        await held.aread()
        await held.aclose()
        first.cancel()  # its client left just as room was made for it (or it ran first)
        assert (await asyncio.wait_for(second, 2)).text == "onetwo"  # not a pool timeout
        await asyncio.gather(first, return_exceptions=True)


async def test_a_response_closed_after_its_pool_is_closed_is_no_error() -> None:
    server = Server()
    async with server as url:
        http = client()
        held = await hold(http, url)
        await http.aclose()  # the server stops: its clients close, streams still open
        await held.aclose()
