"""The stream log's contract, the same for the SQLite file, a real Redis and the DynamoDB table
(moto's server mode), and the journal's paging over it: every event once, in order, ends
marked."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import pytest

from streamfn.chunks import Finish, StreamChunk, StreamError, TextDelta, Usage
from streamfn.dialects import Event
from streamfn.resume import LEASE_S, Head, Page, StreamLog, position
from streamfn.resume.dynamodb import DynamoDBStreamLog
from streamfn.resume.live import Streams
from streamfn.resume.redis import RedisStreamLog
from streamfn.resume.sqlite import SqliteStreamLog
from tests.fakes.aws import Moto, create_streams_table
from tests.fakes.servers import RedisServer, SentinelRedis


@pytest.fixture(params=["sqlite", "redis", "redis-sentinel", "dynamodb"])
def log(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StreamLog]:
    if request.param == "sqlite":
        made: StreamLog = SqliteStreamLog(tmp_path / "streams.sqlite3", ttl_s=3600)
    elif request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis")
        made = RedisStreamLog(redis.url, ttl_s=3600)
    elif request.param == "redis-sentinel":  # the primary found through Redis Sentinel
        sentinel: SentinelRedis = request.getfixturevalue("sentinel")
        made = RedisStreamLog(sentinel.url, ttl_s=3600)
    else:
        moto: Moto = request.getfixturevalue("moto")
        for name, value in moto.env.items():
            monkeypatch.setenv(name, value)
        table = f"streams-{uuid.uuid4().hex[:8]}"
        create_streams_table(moto.dynamodb(), table)
        made = DynamoDBStreamLog(table, ttl_s=3600)
    yield made
    made.close()


def head(owner: str = "me", chat: str | None = None) -> Head:
    return Head(uuid.uuid4().hex, owner, chat, time.time(), time.time() + 60)


def events(n: int, start: int = 1) -> tuple[Event, ...]:
    return tuple(Event("token", f"t{i}") for i in range(start, start + n))


def test_position_reads_streamfn_ids_and_bare_numbers() -> None:
    id = uuid.uuid4().hex
    assert position(f"{id}:17") == (id, 17)
    assert position("17") == (None, 17)
    assert position(None, "5") == (None, 5)
    assert position(f"{id}:17", "5") == (id, 17)  # Last-Event-ID wins over ?after
    assert position("what") == (None, 0)
    assert position("a:b:c") == (None, 0)
    assert position("x:3") == (None, 3)  # too short to be a stream id
    assert position(None) == (None, 0)


def test_heads_pages_chats_and_stops(log: StreamLog) -> None:
    a, b = head(chat="chat-1"), head()
    log.write([a, b], [Page(a.id, 3, events(3)), Page(a.id, 5, events(2, 4), end=True)])
    assert log.head(a.id) == a
    assert log.head("nothing-here") is None
    assert [(p.last, p.end) for p in log.pages(a.id, 0)] == [(3, False), (5, True)]
    assert [p.last for p in log.pages(a.id, 3)] == [5]  # only pages with events after 3
    assert log.pages(a.id, 2)[0].after(2) == [(3, Event("token", "t3"))]
    assert log.pages(b.id, 0) == []
    assert [p.last for p in log.pages(a.id, 0, limit=1)] == [3]
    last = log.last_page(a.id)
    assert last is not None
    assert (last.last, last.end) == (5, True)
    assert log.last_page(b.id) is None
    assert log.latest("me", "chat-1") == a.id
    assert log.latest("someone else", "chat-1") is None
    later = head(chat="chat-1")
    log.write([later], [])
    assert log.latest("me", "chat-1") == later.id  # a chat's latest stream
    assert log.beat([a.id, b.id], [], time.time()).stopped == set()
    log.stop(b.id)
    log.stop("nothing-here")  # no error, nothing made
    assert log.beat([a.id, b.id], [], time.time()).stopped == {b.id}
    assert log.head("nothing-here") is None


def test_batches_past_the_apis_limits(log: StreamLog) -> None:
    """BatchWriteItem takes 25 items, BatchGetItem 100 keys: more go in several calls."""
    heads = [head() for _ in range(130)]
    log.write(heads, [Page(h.id, 1, events(1), end=True) for h in heads])
    for h in heads[::3]:
        log.stop(h.id)
    beat = log.beat([h.id for h in heads], [h.id for h in heads], time.time())
    assert beat.stopped == {h.id for h in heads[::3]}
    assert set(beat.leases) == {h.id for h in heads}
    assert all(log.pages(h.id, 0) for h in heads[-3:])


def test_leases_readers_and_who_ends_a_dead_producers_stream(log: StreamLog) -> None:
    """A producer's heartbeat renews its lease; a reader's marks it present for the producer;
    a lease not renewed lapses; the first to end a dead producer's stream is the only one."""
    now = time.time()
    will = (Event("error", '{"type":"interrupted"}'),)
    a, b = head(), head()
    log.write([a, b], [Page(a.id, 2, events(2), will=will, chars=7)])
    # Written just now: its lease runs LEASE_S from now.
    lease = log.beat([], [a.id], now).leases[a.id]
    assert lease is not None
    assert lease > now
    # A reads A (from another process): A's producer hears of it; B has no reader.
    producer = log.beat([a.id, b.id], [], now)
    assert producer.read == {a.id}
    assert producer.lost == set()
    # Later, with no heartbeat from either producer meanwhile: both leases have lapsed.
    later = now + LEASE_S + 1
    leases = log.beat([], [a.id, b.id], later).leases
    assert all(lease is not None and lease < later for lease in leases.values())
    assert {h.id for h, _ in log.orphans(later)} <= {a.id, b.id}  # none where it cannot list
    [last] = log.pages(a.id, 0)
    assert (last.will, last.chars) == (will, 7)
    end = Page(a.id, 3, will, end=True, chars=7)
    assert log.interrupt(a.id, end, None)
    assert not log.interrupt(a.id, end, None)  # ended already: not twice
    assert [p.end for p in log.pages(a.id, 0)] == [False, True]
    assert log.pages(a.id, 2)[0].events == will
    # The producer, were it alive after all, learns it lost its stream.
    assert log.beat([a.id], [], later).lost == {a.id}
    assert a.id not in {h.id for h, _ in log.orphans(later)}
    assert not log.interrupt("nothing-here", end, None)


@pytest.fixture(params=["sqlite", "redis"])
def listing_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StreamLog]:
    """The logs that can list their streams whose producers died."""
    if request.param == "sqlite":
        made: StreamLog = SqliteStreamLog(tmp_path / "streams.sqlite3", ttl_s=3600)
    else:
        redis: RedisServer = request.getfixturevalue("redis")
        made = RedisStreamLog(redis.url, ttl_s=3600)
    yield made
    made.close()


def test_orphans_are_the_streams_of_dead_producers(listing_log: StreamLog) -> None:
    log = listing_log
    dead, alive, done = head(), head(), head()
    log.write(
        [dead, alive, done], [Page(dead.id, 1, events(1)), Page(done.id, 1, events(1), end=True)]
    )
    later = time.time() + LEASE_S + 1
    log.beat([alive.id], [], later - 1)  # renewed until past `later`
    [(orphan, last)] = log.orphans(later)
    assert orphan.id == dead.id
    assert last is not None
    assert last.last == 1


def test_the_local_log_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its bound the oldest ended streams go, running ones stay, and the file shrinks."""
    import streamfn.resume.sqlite as sqlite_log

    monkeypatch.setattr(sqlite_log, "_PRUNE_EVERY_S", 0.0)
    path = tmp_path / "streams.sqlite3"
    log = SqliteStreamLog(path, ttl_s=3600, max_bytes=3 << 20)
    big = tuple(Event("token", "x" * 1000) for _ in range(500))  # about 0.5 MB a page
    running = head()
    log.write([running], [Page(running.id, 500, big)])
    ended = []
    for _ in range(20):
        h = head()
        ended.append(h)
        log.write([h], [Page(h.id, 500, big), Page(h.id, 1000, big, end=True)])
    log.write([], [])  # a write prunes
    kept = [h for h in ended if log.pages(h.id, 0)]
    assert 0 < len(kept) < 5
    assert kept == ended[-len(kept) :]  # the newest
    assert log.pages(running.id, 0)
    size = path.stat().st_size + (tmp_path / "streams.sqlite3-wal").stat().st_size
    assert size < 16 << 20, size
    log.close()


async def scripted(*steps: StreamChunk | float) -> AsyncGenerator[StreamChunk, None]:
    for step in steps:
        if isinstance(step, float):
            await asyncio.sleep(step)
        else:
            yield step


async def test_the_journal_splits_big_events_into_pages_and_marks_the_end(
    tmp_path: Path,
) -> None:
    log = SqliteStreamLog(tmp_path / "streams.sqlite3", ttl_s=3600)
    streams = Streams(log, grace_s=1, timeout_s=5)
    big = "x" * 150_000  # more than a page holds: a page each
    chunks = scripted(
        TextDelta(big), TextDelta(big), TextDelta(big), 0.3, Finish("stop", Usage(1, 3))
    )

    def encode(chunk: StreamChunk) -> list[Event]:
        if isinstance(chunk, TextDelta):
            return [Event("token", chunk.text)]
        return []  # the end brings no event: the journal marks the last page it wrote

    producer = streams.start(head(), chunks, encode)
    producer.release()  # nobody reading; the grace period outlasts the stream
    await producer.closed()
    pages = log.pages(producer.head.id, 0)
    assert len(pages) >= 2
    assert [p.end for p in pages] == [False] * (len(pages) - 1) + [True]
    numbered = [item for page in pages for item in page.after(0)]
    assert [n for n, _ in numbered] == [1, 2, 3]
    assert all(e.data == big for _, e in numbered)
    await streams.aclose()


async def test_a_stream_stopped_before_its_task_first_runs_still_ends(tmp_path: Path) -> None:
    """Cancelling a task before its first step skips its `finally`; the producer's must run."""
    log = SqliteStreamLog(tmp_path / "streams.sqlite3", ttl_s=3600)
    streams = Streams(log, grace_s=1, timeout_s=5)
    chunks = scripted(TextDelta("never read"), Finish("stop", Usage(1, 1)))
    producer = streams.start(head(), chunks, lambda chunk: [Event(None, type(chunk).__name__)])
    producer.cancel("stopped")  # in the same step as its start
    await asyncio.wait_for(producer.closed(), 5)
    assert [e.data for e in producer.between(0, producer.count)] == ["StreamError"]
    first = producer.first.result()
    assert isinstance(first, StreamError)
    assert first.type == "stopped"
    assert streams.local(producer.head.id) is None  # left the registry once durable
    [page] = log.pages(producer.head.id, 0)
    assert page.end
    await streams.aclose()
