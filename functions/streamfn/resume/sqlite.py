"""The stream log in a local SQLite file (uvicorn, `make run`, self-hosting).

Several processes may share the file (uvicorn workers, servers on one data directory): WAL lets
them read while one writes, and ownership (leases, reader presence, stops, ends) is in the
`streams` table, which every process's journal reads and writes on its heartbeat.

The file is bounded: streams older than the retention (`STREAMFN_RESUME_TTL_S`) are deleted, and
past `max_bytes` of events the oldest ended streams go first, checked every few seconds as
pages are written; freed pages go back to the file (incremental auto-vacuum) and the WAL is
truncated after checkpoints, so the file shrinks rather than only stops growing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from streamfn.dialects import Event
from streamfn.resume import LEASE_S, Beat, Head, Page

logger = logging.getLogger(__name__)

# A file made by an older streamfn, whose tables lack the ownership columns, is made anew: the
# log is a cache of streams at most STREAMFN_RESUME_TTL_S old.
_OWNERSHIP = "lease_until"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    chat TEXT,
    started_at REAL NOT NULL,
    ends_by REAL NOT NULL,
    will TEXT NOT NULL DEFAULT '[]',
    record TEXT,
    stopped INTEGER NOT NULL DEFAULT 0,
    ended INTEGER NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0,
    read_until REAL NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pages (
    stream TEXT NOT NULL,
    last INTEGER NOT NULL,
    events TEXT NOT NULL,
    end INTEGER NOT NULL,
    will TEXT NOT NULL DEFAULT '[]',
    chars INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, last)
);
CREATE TABLE IF NOT EXISTS chats (
    owner TEXT NOT NULL,
    chat TEXT NOT NULL,
    stream TEXT NOT NULL,
    PRIMARY KEY (owner, chat)
);
CREATE INDEX IF NOT EXISTS streams_started_at ON streams (started_at);
CREATE INDEX IF NOT EXISTS streams_open ON streams (ended, lease_until);
"""

_PRUNE_EVERY_S = 5.0
_HEAD = "id, owner, chat, started_at, ends_by, will, record"
# A page is written unless its stream has been ended by another process (which took its
# producer for dead): a late producer must not write over the end that process wrote.
_PUT_PAGE = (
    "INSERT OR REPLACE INTO pages (stream, last, events, end, will, chars) "
    "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM streams WHERE id = ? AND ended)"
)


def events_json(events: Sequence[Event]) -> str:
    """A page's events as stored: a JSON array of `[name, data]`."""
    return json.dumps([[e.name, e.data] for e in events], ensure_ascii=False)


def events_of(text: str) -> tuple[Event, ...]:
    return tuple(Event(name, data) for name, data in json.loads(text))


def _marks(ids: Sequence[str]) -> str:
    return ", ".join("?" for _ in ids)


class SqliteStreamLog:
    """One connection, opened on first use and shared under a lock (callers are threads)."""

    poll_s = 0.05
    beat_s = 0.5

    def __init__(self, path: Path, *, ttl_s: float, max_bytes: int = 512 << 20) -> None:
        self.path = path
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pruned = 0.0

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
            # Before any table exists: freed pages can then be handed back to the file system.
            connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent
            connection.execute(f"PRAGMA journal_size_limit={64 << 20}")
            columns = {row[1] for row in connection.execute("PRAGMA table_info(streams)")}
            if columns and _OWNERSHIP not in columns:
                with connection:
                    for table in ("streams", "pages", "chats"):
                        connection.execute(f"DROP TABLE IF EXISTS {table}")
                connection.execute("VACUUM")  # auto-vacuum takes effect on an existing file
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection

    def _prune(self, connection: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._pruned < _PRUNE_EVERY_S:
            return
        self._pruned = now
        doomed = [
            id
            for (id,) in connection.execute(
                "SELECT id FROM streams WHERE started_at < ?", (now - self._ttl_s,)
            )
        ]
        (total,) = connection.execute("SELECT coalesce(sum(bytes), 0) FROM streams").fetchone()
        if total > self._max_bytes:
            # Past the bound: the oldest ended streams, until under it. Streams still running
            # stay (each is bounded by STREAMFN_MAX_STREAM_BYTES).
            for id, size in connection.execute(
                "SELECT id, bytes FROM streams WHERE ended ORDER BY started_at"
            ):
                if total <= self._max_bytes:
                    break
                doomed.append(id)
                total -= size
            if total > self._max_bytes:
                logger.warning(
                    "the stream log holds %s bytes of running streams, over its bound of %s "
                    "(STREAMFN_RESUME_MAX_BYTES)",
                    total,
                    self._max_bytes,
                )
        if not doomed:
            return
        for start in range(0, len(doomed), 500):
            some = doomed[start : start + 500]
            connection.execute(f"DELETE FROM pages WHERE stream IN ({_marks(some)})", some)
            connection.execute(f"DELETE FROM chats WHERE stream IN ({_marks(some)})", some)
            connection.execute(f"DELETE FROM streams WHERE id IN ({_marks(some)})", some)

    def prepare(self) -> None:
        with self._lock:
            self._connect()

    def write(self, heads: Sequence[Head], pages: Sequence[Page]) -> None:
        lease = time.time() + LEASE_S
        with self._lock:
            connection = self._connect()
            with connection:
                pruned = self._pruned
                self._prune(connection)
                connection.executemany(
                    "INSERT INTO streams (id, owner, chat, started_at, ends_by, will, record, "
                    "lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    [
                        (
                            h.id,
                            h.owner,
                            h.chat,
                            h.started_at,
                            h.ends_by,
                            events_json(h.will),
                            h.record,
                            lease,
                        )
                        for h in heads
                    ],
                )
                connection.executemany(
                    "INSERT OR REPLACE INTO chats (owner, chat, stream) VALUES (?, ?, ?)",
                    [(h.owner, h.chat, h.id) for h in heads if h.chat is not None],
                )
                rows = [(p, events_json(p.events)) for p in pages]
                connection.executemany(
                    _PUT_PAGE,
                    [
                        (p.stream, p.last, text, p.end, events_json(p.will), p.chars, p.stream)
                        for p, text in rows
                    ],
                )
                connection.executemany(
                    "UPDATE streams SET bytes = bytes + ?, ended = ended OR ? WHERE id = ?",
                    [(len(text), p.end, p.stream) for p, text in rows],
                )
            if self._pruned != pruned:
                connection.execute("PRAGMA incremental_vacuum")

    def head(self, id: str) -> Head | None:
        with self._lock:
            row = (
                self._connect()
                .execute(f"SELECT {_HEAD} FROM streams WHERE id = ?", (id,))
                .fetchone()
            )
        return _head(row) if row is not None else None

    def pages(self, id: str, after: int, limit: int | None = None) -> list[Page]:
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT last, events, end, will, chars FROM pages "
                    "WHERE stream = ? AND last > ? ORDER BY last LIMIT ?",
                    (id, after, -1 if limit is None else limit),
                )
                .fetchall()
            )
        return [_page(id, *row) for row in rows]

    def last_page(self, id: str) -> Page | None:
        with self._lock:
            row = (
                self._connect()
                .execute(
                    "SELECT last, events, end, will, chars FROM pages WHERE stream = ? "
                    "ORDER BY last DESC LIMIT 1",
                    (id,),
                )
                .fetchone()
            )
        return _page(id, *row) if row is not None else None

    def latest(self, owner: str, chat: str) -> str | None:
        with self._lock:
            row = (
                self._connect()
                .execute("SELECT stream FROM chats WHERE owner = ? AND chat = ?", (owner, chat))
                .fetchone()
            )
        return str(row[0]) if row is not None else None

    def stop(self, id: str) -> None:
        with self._lock:
            connection = self._connect()
            with connection:
                connection.execute("UPDATE streams SET stopped = 1 WHERE id = ?", (id,))

    def beat(
        self,
        producing: Sequence[str],
        reading: Sequence[str],
        now: float,
        left: Sequence[str] = (),
    ) -> Beat:
        until = now + LEASE_S
        with self._lock:
            connection = self._connect()
            with connection:
                connection.executemany(
                    "UPDATE streams SET read_until = 0 WHERE id = ?", [(id,) for id in left]
                )
                # Chunks of 500: under SQLite's limit of variables per statement.
                mine: list[tuple[str, int, int, float]] = []
                for start in range(0, len(producing), 500):
                    some = producing[start : start + 500]
                    connection.execute(
                        f"UPDATE streams SET lease_until = ? WHERE id IN ({_marks(some)})",
                        (until, *some),
                    )
                    mine += connection.execute(
                        "SELECT id, stopped, ended, read_until FROM streams "
                        f"WHERE id IN ({_marks(some)})",
                        some,
                    ).fetchall()
                leases: dict[str, float | None] = {}
                for start in range(0, len(reading), 500):
                    some = reading[start : start + 500]
                    connection.execute(
                        f"UPDATE streams SET read_until = ? WHERE id IN ({_marks(some)})",
                        (until, *some),
                    )
                    leases |= connection.execute(
                        f"SELECT id, lease_until FROM streams WHERE id IN ({_marks(some)})", some
                    ).fetchall()
        return Beat(
            stopped=frozenset(id for id, stopped, _, _ in mine if stopped),
            lost=frozenset(id for id, _, ended, _ in mine if ended),
            read=frozenset(id for id, _, _, read_until in mine if read_until > now),
            leases=leases,
        )

    def interrupt(self, id: str, page: Page, record: str | None) -> bool:  # noqa: ARG002
        with self._lock:
            connection = self._connect()
            with connection:
                ended = connection.execute(
                    "UPDATE streams SET ended = 1 WHERE id = ? AND NOT ended", (id,)
                ).rowcount
                if ended:
                    connection.execute(
                        "INSERT OR REPLACE INTO pages (stream, last, events, end, chars) "
                        "VALUES (?, ?, ?, 1, ?)",
                        (id, page.last, events_json(page.events), page.chars),
                    )
        return bool(ended)

    def orphans(self, now: float) -> list[tuple[Head, Page | None]]:
        with self._lock:
            connection = self._connect()
            heads = connection.execute(
                f"SELECT {_HEAD} FROM streams WHERE NOT ended AND lease_until < ?", (now,)
            ).fetchall()
        return [(head, self.last_page(head.id)) for head in map(_head, heads)]

    async def wait(self, id: str, after: int) -> None:  # noqa: ARG002
        await asyncio.sleep(self.poll_s)  # polled: nothing tells of a new page

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _head(row: Sequence[object]) -> Head:
    id, owner, chat, started_at, ends_by, will, record = row
    return Head(
        id=str(id),
        owner=str(owner),
        chat=None if chat is None else str(chat),
        started_at=float(started_at),  # type: ignore[arg-type]
        ends_by=float(ends_by),  # type: ignore[arg-type]
        will=events_of(str(will)),
        record=None if record is None else str(record),
    )


def _page(id: str, last: int, events: str, end: int, will: str, chars: int) -> Page:
    return Page(id, last, events_of(events), bool(end), events_of(will), chars)
