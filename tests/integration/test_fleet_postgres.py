"""Keys and usage records in a real PostgreSQL a fleet shares (`STREAMFN_DATABASE_URL`): the
stores' contract, the schema made once by servers starting together, `streamfn keys` and
`streamfn usage` against it, three servers on one database and one Redis, and PostgreSQL
restarted under them: a clear 503 meanwhile, then service again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamfn.auth import keys
from streamfn.auth.stores import PostgresKeyStore
from streamfn.postgres import MIGRATIONS, Database, DatabaseUnavailable
from streamfn.stores.postgres import PostgresUsageStore
from streamfn.usage import UsageRecord
from tests.fakes.servers import PostgresServer, RedisServer
from tests.processes import ServerProcess
from tests.waiting import free_port, wait_for


def _record(id: str, **fields: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "request_id": id,
        "started_at": time.time(),
        "identity": "key:abc",
        "provider": "echo",
        "model": "echo",
        "outcome": "finished",
        "status": 200,
        "input_tokens": 3,
        "output_tokens": 5,
        "usage_estimated": False,
        "duration_ms": 12.5,
    }
    return UsageRecord(**{**base, **fields})


async def test_servers_starting_together_make_the_schema_once(postgres: PostgresServer) -> None:
    databases = [Database(postgres.url) for _ in range(4)]
    await asyncio.gather(*(d.execute("SELECT 1") for d in databases))
    versions = postgres.psql("SELECT version FROM streamfn_schema ORDER BY version").split()
    assert versions == [str(v) for v in range(1, len(MIGRATIONS) + 1)]
    for database in databases:
        await database.aclose()


async def test_keys_claims_and_secrets_are_the_fleets(postgres: PostgresServer) -> None:
    one, other = Database(postgres.url), Database(postgres.url)  # as two processes
    first, second = PostgresKeyStore(one), PostgresKeyStore(other)
    try:
        key, record = keys.create("web", limits={"requests_per_minute": 5})
        await first.put(record)
        got = await second.get(record.id)
        assert got == record
        assert got is not None
        assert keys.matches(got, (keys.parse(key) or ("", ""))[1])
        assert [r.id for r in await second.all()] == [record.id]
        assert await second.revoke(record.id, time.time())
        assert not await first.revoke(record.id, time.time())  # once
        assert (await first.get(record.id) or record).revoked_at is not None
        assert await first.claim("stream-token:x", time.time() + 60)
        assert not await second.claim("stream-token:x", time.time() + 60)
        assert await first.secret("stream-token") == await second.secret("stream-token")
    finally:
        await first.aclose()
        await second.aclose()


async def test_usage_records_are_replaced_when_they_settle_and_totalled(
    postgres: PostgresServer,
) -> None:
    store = PostgresUsageStore(Database(postgres.url))
    try:
        await store.write(_record("r1", outcome="interrupted", status=0, output_tokens=0))
        await store.write(_record("r1"))  # settled: replaces the record opened at its start
        await store.write(_record("r2", outcome="errored", status=502, usage_estimated=True))
        await store.write(_record("r3", outcome="cancelled", client_disconnected=True))
        [totals] = await asyncio.to_thread(store.totals, 0)
        assert (totals.provider, totals.model, totals.requests) == ("echo", "echo", 3)
        assert (totals.input_tokens, totals.output_tokens) == (9, 15)
        assert (totals.estimated, totals.failed, totals.cancelled) == (1, 1, 1)
        assert totals.day == time.strftime("%Y-%m-%d", time.gmtime())
    finally:
        await store.aclose()


async def test_a_database_that_is_down_is_unavailable_and_names_no_password() -> None:
    database = Database(f"postgresql://streamfn:hunter2@127.0.0.1:{free_port()}/postgres")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        await database.execute("SELECT 1")
    assert time.monotonic() - started < 10
    assert "hunter2" not in str(caught.value)
    await database.aclose()


def _cli(postgres: PostgresServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFN_")}
    env["STREAMFN_DATABASE_URL"] = postgres.url
    command = [sys.executable, "-m", "streamfn.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def fleet(
    postgres: PostgresServer, redis: RedisServer, tmp_path: Path
) -> Iterator[list[ServerProcess]]:
    """Three servers sharing one PostgreSQL and one Redis, auth on."""
    settings = {
        "STREAMFN_DATABASE_URL": postgres.url,
        "STREAMFN_REDIS_URL": redis.url,
        "STREAMFN_AUTH": "api_key",
        "STREAMFN_ECHO_DELAY_MS": "1",
    }
    servers: list[ServerProcess] = []
    try:
        for i in range(3):
            own = {"STREAMFN_STREAMS_DB": str(tmp_path / f"streams-{i}.sqlite3")}
            servers.append(ServerProcess({**settings, **own}))
        yield servers
    finally:
        for server in servers:
            server.stop()


def _chat(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_a_key_made_with_the_command_works_on_every_server_and_each_keeps_usage(
    postgres: PostgresServer, fleet: list[ServerProcess]
) -> None:
    # The servers made the schema as they started, before any request.
    assert postgres.psql("SELECT max(version) FROM streamfn_schema").strip() == str(len(MIGRATIONS))
    created = _cli(postgres, "keys", "create", "--name", "fleet app")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30) as client:
        for server in fleet:
            response = await client.post(
                f"{server.url}/chat/stream", json=_chat("one two"), headers=headers
            )
            assert response.status_code == 200, response.text
            assert "event: done" in response.text
        refused = await client.post(f"{fleet[0].url}/chat/stream", json=_chat("x"))
        assert refused.status_code == 401
    listed = _cli(postgres, "keys", "list")
    assert "fleet app" in listed.stdout
    # Every server's records are in the one database (written once each stream has settled).
    wait_for(
        lambda: (
            postgres.psql("SELECT count(*) FROM usage WHERE outcome = 'finished'").strip() == "3"
        ),
        "three settled usage records",
    )
    totals = _cli(postgres, "usage")
    assert totals.returncode == 0, totals.stderr
    [row] = [line for line in totals.stdout.splitlines() if " echo " in f" {line} "]
    assert row.split()[3] == "3"  # requests


async def test_postgres_restarted_is_a_503_meanwhile_then_service_again(
    postgres: PostgresServer, fleet: list[ServerProcess]
) -> None:
    key = _cli(postgres, "keys", "create", "--name", "restart").stdout.strip()
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30) as client:
        url = f"{fleet[1].url}/chat/stream"
        assert (await client.post(url, json=_chat("hi"), headers=headers)).status_code == 200
        postgres.stop()
        started = time.monotonic()
        down = await client.post(url, json=_chat("hi"), headers=headers)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["type"] == "unavailable"
        assert down.headers["retry-after"] == "1"
        assert time.monotonic() - started < 10
        postgres.start()
        back = await client.post(url, json=_chat("hi"), headers=headers)
        assert back.status_code == 200, back.text
