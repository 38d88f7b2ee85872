"""Budgets (#26, "Budgets"): per identity (STREAMFN_BUDGET_USD_PER_DAY) and per key (`streamfn
keys create --budget-usd N --budget-period day|month`). A request is admitted while what its
identity spent and reserved is under the budget, reserving what it could cost; its end settles
the reservation to what it did cost; past the budget, 429 `budget_exceeded` with Retry-After the
end of the day or month, in each route's own error shape. Counted in memory, in Redis and in
DynamoDB, atomically across processes.

Echo is given a price here (STREAMFN_PRICES): a tenth of a cent a token, in and out, so that
"one two" (2 words in, 2 out) costs $0.004 and, with max_tokens 2, reserves as much."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.quotas import Exceeded, Lease, Quota, Quotas, period
from streamfn.quotas.dynamodb import DynamoDBQuotas
from streamfn.quotas.memory import MemoryQuotas
from streamfn.quotas.redis import RedisQuotas
from streamfn.settings import Settings
from tests.fakes.aws import Moto, create_limits_table
from tests.fakes.servers import RedisServer
from tests.keys import create_key
from tests.processes import ServerProcess
from tests.sse_client import stream, user

if TYPE_CHECKING:
    from redis.asyncio import Redis

Serve = Callable[[ASGIApp], str]
SCRIPT = Path(sys.executable).parent / "streamfn"  # the installed console script

PRICES = {"echo/*": {"input_mtok": 1000, "output_mtok": 1000}}  # $0.001 a token
ASK = user("one two", max_tokens=2)  # $0.004, and reserves $0.004


async def chat(client: httpx.AsyncClient, url: str, **headers: str) -> httpx.Response:
    response, events = await stream(client, f"{url}/chat/stream", ASK, headers=headers)
    if response.status_code == 200:
        [usage] = [json.loads(e.data) for e in events if e.event == "usage"]
        assert usage["cost_usd"] == pytest.approx(0.004)
    return response


def refused_until_the_end_of(response: httpx.Response, kind: str = "day") -> None:
    assert response.status_code == 429
    left = period(kind, time.time())[1]  # type: ignore[arg-type]
    assert left - 5 <= int(response.headers["retry-after"]) <= left + 5


# --- the stores, two of them on one backend as two processes or Lambda environments ----------


@pytest.fixture
async def connections(redis: RedisServer) -> AsyncIterator[list[Redis]]:
    """Clients of this test's own (redis-py's asyncio connections belong to one loop)."""
    from redis.asyncio import Redis

    clients = [Redis.from_url(redis.url, protocol=3) for _ in range(4)]
    yield clients
    for c in clients:
        await c.aclose()


@pytest.fixture
def table(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    name = f"budget-limits-{uuid.uuid4().hex[:8]}"  # moto's server outlives the test
    create_limits_table(moto.dynamodb(), name)
    return name


Stores = Callable[[int], list[Quotas]]


@pytest.fixture(params=["dynamodb", "redis"])
def stores(request: pytest.FixtureRequest) -> Stores:
    """`stores(n)`: n independent limit stores on one shared backend."""
    if request.param == "dynamodb":
        table: str = request.getfixturevalue("table")
        return lambda n: [DynamoDBQuotas(table, lease_s=600) for _ in range(n)]
    redis: RedisServer = request.getfixturevalue("redis")
    clients: list[Redis] = request.getfixturevalue("connections")
    return lambda n: [RedisQuotas(redis.url, lease_s=600, redis=clients[i]) for i in range(n)]


async def attempt(store: Quotas, quota: Quota, reserve_usd: float, who: str = "key:a") -> Any:
    try:
        return await store.acquire(who, quota, 0, reserve_usd)
    except Exceeded as exc:
        return exc


async def test_spend_is_reserved_then_settled_across_processes(stores: Stores) -> None:
    one, two = stores(2)
    quota = Quota(budget_usd=0.01)
    first: Lease = await one.acquire("key:a", quota, 0, 0.008)
    second: Lease = await two.acquire("key:a", quota, 0, 0.003)  # 0.008 < 0.01: admitted
    refused = await attempt(one, quota, 0.001)  # 0.011 spent or reserved
    assert isinstance(refused, Exceeded)
    assert refused.type == "budget_exceeded"
    assert refused.message == (
        "key:a has spent its budget of $0.01 today (UTC): $0.011000 spent or reserved"
    )
    assert 0 < refused.retry_after_s <= 86400
    # Another identity has a budget of its own.
    assert not isinstance(await attempt(two, quota, 0.009, "key:b"), Exceeded)
    await first.release(10, 0.001)  # reserved 0.008, cost 0.001: 0.004 now
    third = await one.acquire("key:a", quota, 0, 0.001)  # 0.005
    await second.release(10, 0.006)  # reserved 0.003, cost 0.006: 0.008
    await third.release(10, 0.001)
    fourth = await two.acquire("key:a", quota, 0, 0.005)  # 0.008 < 0.01: admitted, 0.013
    assert isinstance(await attempt(one, quota, 0), Exceeded)
    await fourth.release(10, None)  # a cost not known is not counted: 0.008 again
    assert not isinstance(await attempt(one, quota, 0), Exceeded)


async def test_racing_processes_never_admit_past_the_budget(
    redis: RedisServer, connections: list[Redis]
) -> None:
    """In Redis, where admissions race for real. (moto's DynamoDB does not isolate concurrent
    transactions, as DynamoDB does: a cancelled one restores the whole table as it found it.)"""
    racing = [RedisQuotas(redis.url, lease_s=600, redis=c) for c in connections]
    quota = Quota(budget_usd=0.005)
    results = await asyncio.gather(*(attempt(racing[i % 4], quota, 0.001) for i in range(20)))
    assert sum(not isinstance(r, Exceeded) for r in results) == 5


async def test_a_monthly_budget_resets_with_the_month(stores: Stores) -> None:
    (store,) = stores(1)
    quota = Quota(budget_usd=0.002, budget_period="month")
    await store.acquire("key:m", quota, 0, 0.003)
    refused = await attempt(store, quota, 0, "key:m")
    assert isinstance(refused, Exceeded)
    assert "this month (UTC)" in refused.message
    assert refused.retry_after_s == pytest.approx(period("month", time.time())[1], abs=5)


async def test_budgets_and_the_other_limits_are_one_admission(stores: Stores) -> None:
    """A request the budget refuses takes nothing of the other limits, and one another limit
    refuses reserves nothing of the budget."""
    (store,) = stores(1)
    quota = Quota(requests_per_minute=3, concurrent_streams=1, budget_usd=0.01)
    held = await store.acquire("key:c", quota, 0, 0.002)
    assert "streams open" in (await attempt(store, quota, 0.009, "key:c")).message
    await held.release(0, 0.002)
    lease = await store.acquire("key:c", quota, 0, 0.009)  # 0.011
    await lease.release(0, 0.009)
    refused = await attempt(store, quota, 0, "key:c")
    assert refused.type == "budget_exceeded"  # refused by the budget: no request counted
    await (await store.acquire("key:c", Quota(requests_per_minute=3), 0)).release(0)


async def test_memory_quotas_reserve_and_settle_as_the_shared_ones_do() -> None:
    quotas = MemoryQuotas()
    quota = Quota(budget_usd=0.01)
    lease = await quotas.acquire("key:a", quota, 0, 0.02)
    assert isinstance(await attempt(quotas, quota, 0), Exceeded)
    await lease.release(0, 0.004)
    await quotas.acquire("key:a", quota, 0, 0.0)
    assert not isinstance(await attempt(quotas, quota, 0), Exceeded)


# --- through a server ------------------------------------------------------------------------


def priced_app(**settings: Any) -> ASGIApp:
    return create_app(
        Settings(**{"prices": PRICES, "echo_delay_ms": 0, "usage_records": False, **settings})
    )


async def test_refused_once_the_days_budget_is_spent_in_every_routes_shape(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(priced_app(budget_usd_per_day=0.01))
    # $0.004 each: 0, 0.004 and 0.008 are under $0.01; then it is spent ($0.012).
    assert [(await chat(client, url)).status_code for _ in range(4)] == [200, 200, 200, 429]
    native = await client.post(f"{url}/chat/stream", json=ASK)
    refused_until_the_end_of(native)
    error = native.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert error["retryable"] is True
    assert error["message"] == (
        "127.0.0.1 has spent its budget of $0.01 today (UTC): $0.012000 spent or reserved"
    )
    body = {"model": "echo", **ASK}
    for path, sent in (
        ("/v1/chat/completions", body),
        ("/v1/responses", {"model": "echo", "input": "x"}),
    ):
        openai = await client.post(f"{url}{path}", json=sent)
        refused_until_the_end_of(openai)
        assert openai.json()["error"]["type"] == "budget_exceeded"
        assert openai.json()["error"]["code"] == "budget_exceeded"
    anthropic = await client.post(f"{url}/v1/messages", json={**body, "max_tokens": 2})
    refused_until_the_end_of(anthropic)
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "budget_exceeded"
    aisdk = await client.post(
        f"{url}/api/chat",
        json={"messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "x"}]}]},
    )
    refused_until_the_end_of(aisdk)
    assert aisdk.json()["error"]["type"] == "budget_exceeded"


async def test_a_running_request_holds_what_it_could_cost_until_it_ends(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(priced_app(budget_usd_per_day=0.05, echo_delay_ms=150))
    # 4 words in, at most 100 out: it reserves $0.104, past the budget while it runs.
    long = asyncio.create_task(
        stream(client, f"{url}/chat/stream", user("one two three four", max_tokens=100))
    )
    await asyncio.sleep(0.3)
    assert (await client.post(f"{url}/chat/stream", json=ASK)).status_code == 429
    response, _ = await long
    assert response.status_code == 200
    # Settled to what it cost, $0.008: room again.
    for _ in range(50):
        if (again := await chat(client, url)).status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert again.status_code == 200


def keys_create(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`streamfn keys create` with `args`, the installed console script."""
    return subprocess.run(
        [str(SCRIPT), "keys", "--db", str(db), "create", "--name", "t", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_keys_own_budget_made_with_the_command(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "keys.sqlite3"
    daily = keys_create(db, "--budget-usd", "0.006").stdout.strip()
    monthly = keys_create(db, "--budget-usd", "0.005", "--budget-period", "month").stdout.strip()
    plain, _ = create_key(db)  # the default budget, STREAMFN_BUDGET_USD_PER_DAY
    url = serve(priced_app(auth="api_key", keys_db=db, budget_usd_per_day=0.01))

    async def statuses(key: str, n: int) -> list[int]:
        auth = {"authorization": f"Bearer {key}"}
        return [(await chat(client, url, **auth)).status_code for _ in range(n)]

    assert await statuses(daily, 3) == [200, 200, 429]
    assert await statuses(plain, 4) == [200, 200, 200, 429]  # a budget of its own
    assert await statuses(monthly, 2) == [200, 200]
    refused = await client.post(
        f"{url}/chat/stream", json=ASK, headers={"authorization": f"Bearer {monthly}"}
    )
    refused_until_the_end_of(refused, "month")
    assert "this month (UTC)" in refused.json()["error"]["message"]
    bad = keys_create(db, "--budget-usd", "-1")
    assert bad.returncode == 2
    assert "not a positive amount" in bad.stderr
    alone = keys_create(db, "--budget-period", "month")
    assert alone.returncode == 2
    assert "--budget-period goes with --budget-usd" in alone.stderr


async def test_a_model_without_a_price_reserves_nothing_and_says_so(
    serve: Serve, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = serve(
        create_app(Settings(budget_usd_per_day=0.000001, echo_delay_ms=0, usage_records=False))
    )
    with caplog.at_level(logging.WARNING, logger="streamfn"):
        statuses = [
            (await client.post(f"{url}/chat/stream", json=ASK)).status_code for _ in range(3)
        ]
    assert statuses == [200] * 3  # echo has no price: the budget cannot see it
    said = [r.getMessage() for r in caplog.records if "no known price" in r.getMessage()]
    assert said == [
        "echo/echo has no known price (STREAMFN_PRICES can give it one): requests to it are "
        "admitted on a budget without reserving anything, and cost nothing there"
    ]


# --- two server processes sharing one budget -------------------------------------------------


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., list[ServerProcess]]]:
    servers: list[ServerProcess] = []

    def start(**env: str) -> list[ServerProcess]:
        settings = {
            "STREAMFN_PRICES": json.dumps(PRICES),
            "STREAMFN_BUDGET_USD_PER_DAY": "0.01",
            "STREAMFN_ECHO_DELAY_MS": "0",
            "STREAMFN_USAGE_RECORDS": "false",
            "STREAMFN_STREAMS_DB": str(tmp_path / "streams.sqlite3"),
            **env,
        }
        servers.extend(ServerProcess(settings) for _ in range(2))
        return servers

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


async def two_servers_share_the_budget(servers: list[ServerProcess]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        statuses = [(await chat(client, servers[i % 2].url)).status_code for i in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused_until_the_end_of(await client.post(f"{servers[1].url}/chat/stream", json=ASK))


async def test_two_servers_share_a_budget_in_redis(
    redis: RedisServer, processes: Callable[..., list[ServerProcess]]
) -> None:
    await two_servers_share_the_budget(processes(STREAMFN_REDIS_URL=redis.url))


async def test_two_servers_share_a_budget_in_dynamodb(
    table: str, processes: Callable[..., list[ServerProcess]]
) -> None:
    await two_servers_share_the_budget(processes(STREAMFN_LIMITS_TABLE=table))
