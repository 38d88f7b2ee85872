"""The store of responses' contract, the same for the stream log's SQLite file, a real Redis and
the DynamoDB table (moto's server mode, the table as template.yaml declares it): round trips of
bodies up to 8 MB, owners kept apart, deletes, replacements, expiry, and a 503's exception when
the backend is down."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from streamfn.dialects import Event
from streamfn.resume import Head, Page, StreamLog
from streamfn.resume.dynamodb import DynamoDBStreamLog
from streamfn.resume.redis import RedisStreamLog
from streamfn.resume.sqlite import SqliteStreamLog
from streamfn.settings import Settings
from streamfn.stored import ResponseStore, Stored, StoredUnavailable, open_responses
from streamfn.stored.dynamodb import DynamoDBResponses
from streamfn.stored.redis import RedisResponses
from streamfn.stored.sqlite import SqliteResponses
from tests.fakes.aws import Moto, create_streams_table
from tests.fakes.servers import RedisServer
from tests.waiting import free_port

if TYPE_CHECKING:
    from redis.asyncio import Redis

HOUR = 3600.0


@dataclass
class Backend:
    """One backend's stores (`open(ttl_s)`, each closed after the test), its stream log, and a
    look at what it holds beneath the store (`items(id)`: the DynamoDB items of a response, the
    SQLite rows, the Redis keys)."""

    name: str
    open: Callable[[float], ResponseStore]
    log: Callable[[], StreamLog]
    items: Callable[[str], list[Any]]


@pytest.fixture(scope="module")
def streams_table(moto: Moto) -> str:
    """One table for the module's tests (each response's id is its own): made once, as
    making one takes a while."""
    table = f"streams-{uuid.uuid4().hex[:8]}"
    create_streams_table(moto.dynamodb(), table)
    return table


@pytest.fixture(params=["sqlite", "redis", "dynamodb"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    opened: list[ResponseStore] = []
    logs: list[StreamLog] = []
    clients: list[Redis] = []

    def opening(make: Callable[[float], ResponseStore]) -> Callable[[float], ResponseStore]:
        def open(ttl_s: float) -> ResponseStore:
            opened.append(make(ttl_s))
            return opened[-1]

        return open

    def logged(make: Callable[[], StreamLog]) -> Callable[[], StreamLog]:
        def log() -> StreamLog:
            logs.append(make())
            return logs[-1]

        return log

    if request.param == "sqlite":
        path = tmp_path / "streams.sqlite3"

        def rows(id: str) -> list[Any]:
            with contextlib.closing(sqlite3.connect(path)) as connection:
                return connection.execute(
                    "SELECT id, owner FROM responses WHERE id = ?", (id,)
                ).fetchall()

        made = Backend(
            "sqlite",
            opening(lambda ttl_s: SqliteResponses(path, ttl_s=ttl_s)),
            logged(lambda: SqliteStreamLog(path, ttl_s=3600)),
            rows,
        )
    elif request.param == "redis":
        from redis.asyncio import Redis as Client

        redis: RedisServer = request.getfixturevalue("redis")
        # A client of the test's own: redis-py's asyncio connections belong to one event loop.
        clients.append(Client.from_url(redis.url, protocol=3))
        made = Backend(
            "redis",
            opening(lambda ttl_s: RedisResponses(redis.url, ttl_s=ttl_s, redis=clients[0])),
            logged(lambda: RedisStreamLog(redis.url, ttl_s=3600)),
            lambda id: redis.cli("KEYS", f"*{id}*").split(),
        )
    else:
        moto: Moto = request.getfixturevalue("moto")
        for name, value in moto.env.items():
            monkeypatch.setenv(name, value)
        table: str = request.getfixturevalue("streams_table")
        dynamodb = moto.dynamodb()

        def items(id: str) -> list[Any]:
            pages = dynamodb.get_paginator("query").paginate(
                TableName=table,
                KeyConditionExpression="#stream = :stream",
                ExpressionAttributeNames={"#stream": "stream"},
                ExpressionAttributeValues={":stream": {"S": f"response#{id}"}},
                ConsistentRead=True,
            )
            return [item for page in pages for item in page["Items"]]

        made = Backend(
            "dynamodb",
            opening(lambda ttl_s: DynamoDBResponses(table, ttl_s=ttl_s)),
            logged(lambda: DynamoDBStreamLog(table, ttl_s=3600)),
            items,
        )
    yield made
    for log in logs:
        log.close()
    for store in opened:
        await store.aclose()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def store(backend: Backend) -> ResponseStore:
    made = backend.open(HOUR)
    await made.prepare()
    return made


def stored(owner: str = "me", body: str | None = None) -> Stored:
    id = f"resp_{uuid.uuid4().hex}"
    if body is None:
        body = json.dumps({"id": id, "output": [{"type": "message", "text": "héllo ✓"}]})
    return Stored(id, owner, time.time(), body)


def image_body(megabytes: float) -> str:
    """A body holding an image as a data URL: base64 of random bytes, which zlib barely
    shrinks (a photograph's pixels are as dense)."""
    data = base64.b64encode(os.urandom(int(megabytes * 3 / 4 * (1 << 20)))).decode()
    image = {"type": "input_image", "image_url": f"data:image/png;base64,{data}"}
    return json.dumps({"input": [{"role": "user", "content": [image]}], "output": []})


async def test_a_response_round_trips(store: ResponseStore) -> None:
    one = stored()
    await store.put(one, ttl_s=HOUR)
    assert await store.get(one.id, "me") == one
    assert await store.get("resp_never", "me") is None
    assert await store.get("", "me") is None
    assert await store.get("x" * 4000, "me") is None  # longer than any key: nothing, no error


async def test_another_owner_neither_gets_nor_deletes_it(store: ResponseStore) -> None:
    mine = stored("me")
    await store.put(mine, ttl_s=HOUR)
    assert await store.get(mine.id, "you") is None
    assert await store.delete(mine.id, "you") is False
    assert await store.get(mine.id, "me") == mine  # still there, whole, for its owner
    assert await store.get(mine.id, "me ") is None  # owners are compared exactly


async def test_a_deleted_response_is_gone(store: ResponseStore, backend: Backend) -> None:
    one, other = stored(), stored()
    big = stored(body=image_body(1))  # in several DynamoDB items
    for each in (one, other, big):
        await store.put(each, ttl_s=HOUR)
    assert await store.delete(one.id, "me") is True
    assert await store.get(one.id, "me") is None
    assert await store.delete(one.id, "me") is False  # once
    assert await store.delete("resp_never", "me") is False
    assert await store.get(other.id, "me") == other  # only that one
    assert await store.delete(big.id, "me") is True
    assert backend.items(big.id) == []  # every part of it
    assert backend.items(one.id) == []


async def test_an_8_mb_body_round_trips(store: ResponseStore, backend: Backend) -> None:
    big = stored(body=image_body(8))
    assert len(big.body) >= 8 << 20
    await store.put(big, ttl_s=HOUR)
    assert await store.get(big.id, "me") == big
    if backend.name == "dynamodb":
        items = backend.items(big.id)
        assert len(items) > 8 * 1_000_000 * 3 / 4 // 400_000  # split: items are at most 400 KB
        assert {item["ttl"]["N"] for item in items} == {items[0]["ttl"]["N"]}  # all expire


async def test_a_put_replaces_the_response_whole(store: ResponseStore, backend: Backend) -> None:
    first = stored(body=image_body(2))
    await store.put(first, ttl_s=HOUR)
    small = Stored(first.id, "me", first.created_at + 1, '{"status": "completed"}')
    await store.put(small, ttl_s=HOUR)
    assert await store.get(first.id, "me") == small
    if backend.name == "dynamodb":
        assert len(backend.items(first.id)) == 1  # the bigger body's parts are gone
    bigger = Stored(first.id, "me", first.created_at + 2, image_body(1.5))
    await store.put(bigger, ttl_s=HOUR)
    assert await store.get(first.id, "me") == bigger
    theirs = Stored(first.id, "you", first.created_at + 3, '{"theirs": true}')
    await store.put(theirs, ttl_s=HOUR)  # the owner too
    assert await store.get(first.id, "me") is None
    assert await store.get(first.id, "you") == theirs


async def test_responses_expire(store: ResponseStore, backend: Backend) -> None:
    started = time.monotonic()
    short, kept, clipped = stored(), stored(), stored()
    await store.put(short, ttl_s=0.5)
    assert await store.get(short.id, "me") == short
    # A store whose retention is shorter than a put asks for keeps it no longer.
    capped = backend.open(0.5)
    await capped.put(clipped, ttl_s=HOUR)
    assert await capped.get(clipped.id, "me") == clipped
    await store.put(kept, ttl_s=HOUR)
    await asyncio.sleep(started + 0.6 - time.monotonic())
    if backend.name == "dynamodb":
        assert backend.items(short.id)  # still in the table: DynamoDB's TTL is lazy
    for gone in (short, clipped):
        assert await store.delete(gone.id, "me") is False  # nothing to delete
        assert await store.get(gone.id, "me") is None
    assert await store.get(kept.id, "me") == kept
    if backend.name != "dynamodb":
        # Redis has expired them; SQLite deleted the expired rows it met.
        assert backend.items(short.id) == []
        assert backend.items(clipped.id) == []


async def test_responses_live_beside_the_stream_log(store: ResponseStore, backend: Backend) -> None:
    """The same file, Redis or table as the stream log, under keys of their own: a stream with
    the same id as a response is untouched by it, and the reverse."""
    one = stored()
    log = backend.log()
    head = Head(one.id, "me", None, time.time(), time.time() + 60)
    page = Page(one.id, 1, (Event("token", "hi"),), end=True)
    await asyncio.to_thread(log.write, [head], [page])
    await store.put(one, ttl_s=HOUR)
    assert await asyncio.to_thread(log.head, one.id) == head
    assert await asyncio.to_thread(log.pages, one.id, 0) == [page]
    assert await store.delete(one.id, "me") is True
    assert await asyncio.to_thread(log.head, one.id) == head
    await store.put(one, ttl_s=HOUR)
    assert await store.get(one.id, "me") == one
    if isinstance(store, SqliteResponses):
        # The store made the file (at `prepare`, before the log): it left it as the log would
        # have, handing freed pages back to the file system.
        with contextlib.closing(sqlite3.connect(store.path)) as connection:
            assert connection.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental


@pytest.fixture
async def down(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ResponseStore, str]]:
    """A store of `backend`'s kind that cannot be reached, and a secret its URL holds."""
    secret = "hunter2-secret"
    if backend.name == "sqlite":
        (tmp_path / "a-file").write_text("")  # no directory can be made beneath it
        yield SqliteResponses(tmp_path / "a-file" / "streams.sqlite3", ttl_s=HOUR), secret
    elif backend.name == "redis":
        from redis.asyncio import Redis as Client

        url = f"redis://user:{secret}@127.0.0.1:{free_port()}/0"
        client = Client.from_url(url, socket_connect_timeout=2)
        yield RedisResponses(url, ttl_s=HOUR, redis=client), secret
        await client.aclose()
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
        table = f"streams-{uuid.uuid4().hex[:8]}"
        yield DynamoDBResponses(table, ttl_s=HOUR, timeout_s=1), secret


async def test_a_backend_that_is_down_is_unavailable(down: tuple[ResponseStore, str]) -> None:
    store, secret = down
    one = stored()
    started = time.monotonic()
    # At once: the DynamoDB client's retries back off for a second or two each.
    failures = await asyncio.gather(
        store.put(one, ttl_s=HOUR),
        store.get(one.id, "me"),
        store.delete(one.id, "me"),
        return_exceptions=True,
    )
    for failure in failures:
        assert isinstance(failure, StoredUnavailable), failure
        assert "cannot be reached just now" in str(failure)
        assert secret not in str(failure)
    assert time.monotonic() - started < 5  # a 503 within seconds, not a request held
    if not isinstance(store, DynamoDBResponses):  # whose `prepare` makes a client, no call
        with pytest.raises(StoredUnavailable):
            await store.prepare()
    await store.aclose()


def test_responses_are_stored_beside_the_stream_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`open_responses` picks the stream log's backend: the table, else Redis, else its file;
    none in Lambda without a table."""
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "STREAMFN_STREAMS_TABLE", "STREAMFN_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "streams.sqlite3"
    table = open_responses(Settings(streams_table="streams", redis_url="redis://r"), ttl_s=HOUR)
    assert isinstance(table, DynamoDBResponses)
    assert table.table == "streams"
    assert isinstance(open_responses(Settings(redis_url="redis://r"), ttl_s=HOUR), RedisResponses)
    local = open_responses(Settings(streams_db=path), ttl_s=HOUR)
    assert isinstance(local, SqliteResponses)
    assert local.path == path
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "streamfn")
    assert open_responses(Settings(streams_db=path), ttl_s=HOUR) is None
    assert "STREAMFN_STREAMS_TABLE is not set" in caplog.text
    in_lambda = open_responses(Settings(streams_table="streams"), ttl_s=HOUR)
    assert isinstance(in_lambda, DynamoDBResponses)
