"""Per-identity limits shared by every process and Lambda environment: counted in DynamoDB
(moto's server mode on loopback) with conditional transactions, so two servers (or two
environments) racing for the last slot cannot both get it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.quotas import Exceeded, Quota
from streamfn.quotas.dynamodb import DynamoDBQuotas
from streamfn.settings import Settings
from tests.fakes.aws import Moto, create_limits_table
from tests.sse_client import stream, user

Serve = Callable[[ASGIApp], str]
_names = itertools.count()


@pytest.fixture
def table(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    name = f"limits-{next(_names)}"
    create_limits_table(moto.dynamodb(), name)
    return name


def environments(table: str, n: int = 2, lease_s: float = 600) -> list[DynamoDBQuotas]:
    """`n` independent stores on one table, as `n` Lambda environments would have."""
    return [DynamoDBQuotas(table, lease_s=lease_s) for _ in range(n)]


async def outcomes(store: DynamoDBQuotas, quota: Quota, reserve: int = 0) -> str:
    try:
        await store.acquire("key:a", quota, reserve)
    except Exceeded as exc:
        return exc.message
    return "ok"


async def test_requests_per_minute_across_environments(table: str) -> None:
    one, two = environments(table)
    quota = Quota(requests_per_minute=3)
    results = [await outcomes(store, quota) for store in (one, two, one, two)]
    assert results[:3] == ["ok"] * 3
    assert results[3] == "key:a made 3 requests this minute"
    # Another identity has its own count.
    await two.acquire("key:b", quota, 0)


async def test_racing_environments_never_exceed_concurrent_streams(table: str) -> None:
    stores = environments(table, 4)
    quota = Quota(concurrent_streams=5)
    results = await asyncio.gather(*(outcomes(stores[i % 4], quota) for i in range(20)))
    assert results.count("ok") == 5
    assert set(results) == {"ok", "key:a has 5 streams open already"}


async def test_a_released_stream_frees_its_slot_for_another_environment(table: str) -> None:
    one, two = environments(table)
    quota = Quota(concurrent_streams=1)
    lease = await one.acquire("key:a", quota, 0)
    assert await outcomes(two, quota) == "key:a has 1 streams open already"
    await lease.release(0)
    second = await two.acquire("key:a", quota, 0)
    await second.release(0)


async def test_a_dead_environments_streams_expire_and_are_swept(table: str) -> None:
    # Leases that expire at once stand for environments killed mid-stream that never release.
    (dead,) = environments(table, 1, lease_s=0)
    (alive,) = environments(table, 1)
    quota = Quota(concurrent_streams=2)
    await dead.acquire("key:a", quota, 0)
    await dead.acquire("key:a", quota, 0)
    await asyncio.sleep(1.1)  # past the (whole-second) expiry
    live = await alive.acquire("key:a", quota, 0)  # sweeps both, then admits
    await alive.acquire("key:a", quota, 0)
    assert await outcomes(alive, quota) == "key:a has 2 streams open already"  # live ones hold
    await live.release(0)


async def test_tokens_per_day_reserved_then_settled_across_environments(table: str) -> None:
    one, two = environments(table)
    quota = Quota(tokens_per_day=100)
    lease = await one.acquire("key:a", quota, 90)
    refused = await outcomes(two, quota, 20)
    assert refused.startswith("key:a would exceed 100 tokens today (UTC): this request reserves 20")
    assert refused.endswith("90 are used or reserved")
    await lease.release(5)  # used 5 of the 90 reserved
    second = await two.acquire("key:a", quota, 95)  # 5 + 95 = 100: exactly fits
    assert await outcomes(one, quota, 1) != "ok"
    await second.release(0)
    assert await outcomes(one, quota, 1) == "ok"
    # A reservation over the whole day's allowance never touches the table.
    assert "reserves 101" in await outcomes(one, quota, 101)


async def test_all_limits_in_one_transaction_take_nothing_when_one_refuses(table: str) -> None:
    (store,) = environments(table, 1)
    quota = Quota(requests_per_minute=3, concurrent_streams=1, tokens_per_day=350)
    held = await store.acquire("key:a", quota, 100)
    assert "streams open" in await outcomes(store, quota, 100)  # refused by one condition
    await held.release(100)
    # Had the refused request counted a request or reserved its 100 tokens, the third of
    # these would be refused.
    for _ in range(2):
        await (await store.acquire("key:a", quota, 100)).release(100)
    assert await outcomes(store, quota, 50) == "key:a made 3 requests this minute"


async def test_two_servers_share_one_keys_limits(
    table: str, serve: Serve, client: httpx.AsyncClient
) -> None:
    settings = Settings(limits_table=table, requests_per_minute=3, usage_records=False)
    urls = [serve(create_app(settings)), serve(create_app(settings))]
    statuses = []
    for url in urls * 2:
        response, _ = await stream(client, f"{url}/chat/stream", user("hi"))
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]


async def test_a_stream_read_to_its_end_has_given_its_slot_back(
    table: str, serve: Serve, client: httpx.AsyncClient
) -> None:
    # A chat's next turn goes as soon as the last one's final event arrives: under a limit of
    # one stream it must be admitted, so the slot goes back before that event is sent (a
    # release after it would race the next request; DynamoDB's round trip made it lose).
    settings = Settings(limits_table=table, concurrent_streams=1, usage_records=False)
    url = serve(create_app(settings))
    statuses = []
    for turn in range(8):
        response, events = await stream(client, f"{url}/chat/stream", user(f"turn {turn}"))
        assert events[-1].event == "done"
        statuses.append(response.status_code)
    assert statuses == [200] * 8


async def test_an_unreachable_limits_table_refuses_with_503_not_uncounted(
    moto: Moto, monkeypatch: pytest.MonkeyPatch, serve: Serve, client: httpx.AsyncClient
) -> None:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(limits_table="no-such-table", concurrent_streams=2, usage_records=False)
    url = serve(create_app(settings))
    response = await client.post(f"{url}/v1/chat/completions", json={"model": "echo", **user("x")})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["message"] == "limits cannot be checked just now"
