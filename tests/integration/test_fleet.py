"""A fleet sharing a real redis-server (`STREAMFN_REDIS_URL`): limits exact under concurrency in
one process and across three servers, slots that a dead server's streams give back, a Redis
that cannot be reached refusing (503) rather than not counting, stream tokens redeemed once
fleet-wide, and `WORKERS=N`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from streamfn.quotas import Exceeded, Lease, Quota, Unavailable
from streamfn.quotas.redis import RedisQuotas
from streamfn.redis_connection import sentinel_url, where
from tests.fakes.servers import RedisServer, SentinelRedis
from tests.keys import create_key
from tests.processes import ROOT, ServerProcess
from tests.waiting import free_port

if TYPE_CHECKING:
    from redis.asyncio import Redis


@pytest.fixture
async def connection(redis: RedisServer) -> AsyncIterator[Redis]:
    """A client of this test's own: redis-py's asyncio connections belong to one event loop."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis.url, protocol=3)
    yield client
    await client.aclose()


async def _try(quotas: RedisQuotas, identity: str, quota: Quota, reserve: int = 0) -> Any:
    try:
        return await quotas.acquire(identity, quota, reserve)
    except Exceeded as exc:
        return exc


async def test_requests_per_minute_are_exact_under_concurrency(
    redis: RedisServer, connection: Redis
) -> None:
    redis.clear_of_minute_end()
    quotas = RedisQuotas(redis.url, lease_s=60, redis=connection)
    results = await asyncio.gather(
        *(_try(quotas, "key:a", Quota(requests_per_minute=10)) for _ in range(60))
    )
    refused = [r for r in results if isinstance(r, Exceeded)]
    assert len(results) - len(refused) == 10
    assert all(0 < r.retry_after_s <= 60 for r in refused)
    assert "made 10 requests this minute" in refused[0].message
    # Another identity has a minute of its own.
    assert not isinstance(await _try(quotas, "key:b", Quota(requests_per_minute=10)), Exceeded)


async def test_a_released_slot_is_free_again_and_a_lapsed_one_too(
    redis: RedisServer, connection: Redis
) -> None:
    quotas = RedisQuotas(redis.url, lease_s=1, redis=connection)
    quota = Quota(concurrent_streams=2)
    first: Lease = await quotas.acquire("key:a", quota, 0)
    await quotas.acquire("key:a", quota, 0)  # never released, as by a server killed mid-stream
    refused = await _try(quotas, "key:a", quota)
    assert isinstance(refused, Exceeded)
    assert "has 2 streams open already" in refused.message
    await first.release(0)
    third = await quotas.acquire("key:a", quota, 0)
    assert isinstance(await _try(quotas, "key:a", quota), Exceeded)
    await asyncio.sleep(1.2)  # the unreleased lease lapses (and the third's, of 1 s, too)
    assert not isinstance(await _try(quotas, "key:a", quota), Exceeded)
    await third.release(0)


async def test_tokens_per_day_are_reserved_then_settled(
    redis: RedisServer, connection: Redis
) -> None:
    quotas = RedisQuotas(redis.url, lease_s=60, redis=connection)
    quota = Quota(tokens_per_day=100)
    lease = await quotas.acquire("key:a", quota, 60)
    refused = await _try(quotas, "key:a", quota, 60)
    assert isinstance(refused, Exceeded)
    assert "60 are used or reserved" in refused.message
    await lease.release(10)  # it used 10 of the 60 it reserved
    await quotas.acquire("key:a", quota, 90)
    assert isinstance(await _try(quotas, "key:a", quota, 1), Exceeded)


async def test_a_redis_that_cannot_be_reached_is_unavailable_within_seconds() -> None:
    from redis.asyncio import Redis as Client

    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    client = Client.from_url(url, socket_connect_timeout=2)
    quotas = RedisQuotas(url, lease_s=60, redis=client)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await quotas.acquire("key:a", Quota(requests_per_minute=1), 0)
    await client.aclose()
    assert time.monotonic() - started < 5
    assert "hunter2" not in str(caught.value)


Fleet = Callable[..., list[ServerProcess]]


@pytest.fixture
def fleet(redis: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    """`fleet(**settings)`: three servers sharing one Redis, as behind a load balancer."""
    servers: list[ServerProcess] = []

    def start(**settings: str) -> list[ServerProcess]:
        env = {
            "STREAMFN_REDIS_URL": redis.url,
            "STREAMFN_ECHO_DELAY_MS": "50",
            "STREAMFN_STREAMS_DB": str(tmp_path / "streams.sqlite3"),
            "STREAMFN_USAGE_DB": str(tmp_path / "usage.sqlite3"),
            **{f"STREAMFN_{k.upper()}": v for k, v in settings.items()},
        }
        for _ in range(3):
            servers.append(ServerProcess(env))
        return servers

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def _chat(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_three_servers_admit_exactly_the_limit_between_them(
    redis: RedisServer, fleet: Fleet
) -> None:
    servers = fleet(requests_per_minute="10")
    redis.clear_of_minute_end()
    async with httpx.AsyncClient(timeout=30) as client:
        # Four to each in turn: counted per process, all twelve would be admitted.
        first = [
            await client.post(f"{servers[i % 3].url}/chat/stream", json=_chat("hi"))
            for i in range(12)
        ]
        # Then all at once, to any of them.
        rest = await asyncio.gather(
            *(client.post(f"{servers[i % 3].url}/chat/stream", json=_chat("hi")) for i in range(48))
        )
    statuses = [r.status_code for r in first]
    assert statuses == [200] * 10 + [429] * 2
    assert [r.status_code for r in rest] == [429] * 48
    refused = rest[0]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "made 10 requests this minute" in refused.json()["error"]["message"]


async def test_concurrent_streams_are_counted_across_servers(fleet: Fleet) -> None:
    servers = fleet(concurrent_streams="2")
    async with httpx.AsyncClient(timeout=30) as client:
        long = _chat(" ".join(["word"] * 40))  # 2 s at 50 ms a word
        opened = []
        for server in servers[:2]:
            request = client.build_request("POST", f"{server.url}/chat/stream", json=long)
            response = await client.send(request, stream=True)
            assert response.status_code == 200
            opened.append(response)
        third = await client.post(f"{servers[2].url}/chat/stream", json=_chat("hi"))
        assert third.status_code == 429
        assert "2 streams open already" in third.json()["error"]["message"]
        for response in opened:
            await response.aread()  # to the end: the slots are given back
            await response.aclose()
        again = await client.post(f"{servers[2].url}/chat/stream", json=_chat("hi"))
        assert again.status_code == 200


async def test_a_server_whose_redis_is_gone_refuses_with_503(tmp_path: Path) -> None:
    server = ServerProcess(
        {
            "STREAMFN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "STREAMFN_REQUESTS_PER_MINUTE": "10",
            "STREAMFN_STREAMS_DB": str(tmp_path / "streams.sqlite3"),
            "STREAMFN_USAGE_DB": str(tmp_path / "usage.sqlite3"),
        }
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            started = time.monotonic()
            response = await client.post(f"{server.url}/chat/stream", json=_chat("hi"))
            assert response.status_code == 503
            assert response.json()["error"]["type"] == "unavailable"
            assert time.monotonic() - started < 5
    finally:
        server.stop()


async def test_a_stream_token_is_redeemed_once_across_the_fleet(
    redis: RedisServer, fleet: Fleet, tmp_path: Path
) -> None:
    key, _ = create_key(tmp_path / "keys.sqlite3")
    servers = fleet(auth="api_key", keys_db=str(tmp_path / "keys.sqlite3"))
    async with httpx.AsyncClient(timeout=30) as client:
        minted = await client.post(
            f"{servers[0].url}/chat/stream/token",
            json={"prompt": "one two"},
            headers={"authorization": f"Bearer {key}"},
        )
        assert minted.status_code == 200, minted.text
        url = minted.json()["url"]
        first = await client.get(f"{servers[1].url}/{url}")
        assert first.status_code == 200
        assert "event: done" in first.text
        again = await client.get(f"{servers[2].url}/{url}")
        assert again.status_code == 401
        assert "already used" in again.json()["error"]["message"]
    # Redeemed in Redis, which every server shares, not in one server's files.
    assert redis.cli("--scan", "--pattern", "streamfn:claim:stream-token:*").split()


def test_workers_without_redis_are_refused_when_limits_are_in_play() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFN_")}
    env |= {"WORKERS": "2", "PORT": str(free_port()), "STREAMFN_REQUESTS_PER_MINUTE": "5"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "local" / "serve.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "STREAMFN_REDIS_URL" in done.stderr


async def test_workers_share_the_limits_through_redis(redis: RedisServer, tmp_path: Path) -> None:
    server = ServerProcess(
        {
            "WORKERS": "2",
            "STREAMFN_REDIS_URL": redis.url,
            "STREAMFN_REQUESTS_PER_MINUTE": "4",
            "STREAMFN_STREAMS_DB": str(tmp_path / "streams.sqlite3"),
            "STREAMFN_USAGE_DB": str(tmp_path / "usage.sqlite3"),
        }
    )
    redis.clear_of_minute_end()
    try:
        statuses = []
        for _ in range(10):  # a new connection each: the workers take turns accepting them
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.post(f"{server.url}/chat/stream", json=_chat("hi"))
                statuses.append(response.status_code)
        assert statuses == [200] * 4 + [429] * 6
    finally:
        server.stop()


async def test_a_primary_found_through_sentinel_counts_the_limits(
    sentinel: SentinelRedis, tmp_path: Path
) -> None:
    server = ServerProcess(
        {
            "STREAMFN_REDIS_URL": sentinel.url,
            "STREAMFN_REQUESTS_PER_MINUTE": "3",
            "STREAMFN_STREAMS_DB": str(tmp_path / "streams.sqlite3"),
            "STREAMFN_USAGE_DB": str(tmp_path / "usage.sqlite3"),
        }
    )
    sentinel.primary.clear_of_minute_end()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            statuses = [
                (await client.post(f"{server.url}/chat/stream", json=_chat("hi"))).status_code
                for _ in range(4)
            ]
        assert statuses == [200, 200, 200, 429]
        # Counted in the primary the sentinel named, under the identity's hash tag.
        assert sentinel.primary.cli("--scan", "--pattern", "streamfn:{*}:counts").split()
    finally:
        server.stop()


def test_sentinel_urls_are_read_and_shown_without_their_password() -> None:
    parsed = sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/mymaster/2")
    assert parsed is not None
    assert parsed.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert (parsed.service, parsed.db, parsed.password) == ("mymaster", 2, "s3cret")
    shown = where("redis+sentinel://:s3cret@10.0.0.1:26379/mymaster")
    assert "s3cret" not in shown
    assert sentinel_url("redis://127.0.0.1:6379/0") is None
    with pytest.raises(ValueError, match="names its sentinels and its service"):
        sentinel_url("redis+sentinel://10.0.0.1:26379/")


async def test_a_stream_token_with_redis_gone_is_a_503_not_a_401(tmp_path: Path) -> None:
    key, _ = create_key(tmp_path / "keys.sqlite3")
    server = ServerProcess(
        {
            "STREAMFN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "STREAMFN_AUTH": "api_key",
            "STREAMFN_KEYS_DB": str(tmp_path / "keys.sqlite3"),
            "STREAMFN_STREAMS_DB": str(tmp_path / "streams.sqlite3"),
            "STREAMFN_USAGE_DB": str(tmp_path / "usage.sqlite3"),
        }
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            minted = await client.post(
                f"{server.url}/chat/stream/token",
                json={"prompt": "hi"},
                headers={"authorization": f"Bearer {key}"},
            )
            assert minted.status_code == 200, minted.text
            redeemed = await client.get(f"{server.url}/{minted.json()['url']}")
            assert redeemed.status_code == 503, redeemed.text
            assert redeemed.headers["retry-after"] == "1"
            assert "cannot be checked just now" in redeemed.json()["error"]["message"]
    finally:
        server.stop()
