"""The stream log in a local SQLite file (uvicorn, `make run`, self-hosting).

Streams older than the retention (`STREAMFN_RESUME_TTL_S`) are deleted when the file is opened
and then every few minutes, as they are written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from streamfn.dialects import Event
from streamfn.resume import Head, Page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    chat TEXT,
    started_at REAL NOT NULL,
    ends_by REAL NOT NULL,
    stopped INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pages (
    stream TEXT NOT NULL,
    last INTEGER NOT NULL,
    events TEXT NOT NULL,
    end INTEGER NOT NULL,
    PRIMARY KEY (stream, last)
);
CREATE TABLE IF NOT EXISTS chats (
    owner TEXT NOT NULL,
    chat TEXT NOT NULL,
    stream TEXT NOT NULL,
    PRIMARY KEY (owner, chat)
);
CREATE INDEX IF NOT EXISTS streams_started_at ON streams (started_at);
"""

_PRUNE_EVERY_S = 300


def events_json(events: Sequence[Event]) -> str:
    """A page's events as stored: a JSON array of `[name, data]`."""
    return json.dumps([[e.name, e.data] for e in events], ensure_ascii=False)


def events_of(text: str) -> tuple[Event, ...]:
    return tuple(Event(name, data) for name, data in json.loads(text))


class SqliteStreamLog:
    """One connection, opened on first use and shared under a lock (callers are threads)."""

    poll_s = 0.05

    def __init__(self, path: Path, *, ttl_s: float) -> None:
        self.path = path
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pruned = 0.0

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection

    def _prune(self, connection: sqlite3.Connection) -> None:
        now = time.time()
        if now - self._pruned < _PRUNE_EVERY_S:
            return
        self._pruned = now
        cutoff = now - self._ttl_s
        old = "SELECT id FROM streams WHERE started_at < ?"
        connection.execute(f"DELETE FROM pages WHERE stream IN ({old})", (cutoff,))
        connection.execute(f"DELETE FROM chats WHERE stream IN ({old})", (cutoff,))
        connection.execute("DELETE FROM streams WHERE started_at < ?", (cutoff,))

    def prepare(self) -> None:
        with self._lock:
            self._connect()

    def write(self, heads: Sequence[Head], pages: Sequence[Page]) -> None:
        with self._lock:
            connection = self._connect()
            with connection:
                self._prune(connection)
                connection.executemany(
                    "INSERT INTO streams (id, owner, chat, started_at, ends_by) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    [(h.id, h.owner, h.chat, h.started_at, h.ends_by) for h in heads],
                )
                connection.executemany(
                    "INSERT OR REPLACE INTO chats (owner, chat, stream) VALUES (?, ?, ?)",
                    [(h.owner, h.chat, h.id) for h in heads if h.chat is not None],
                )
                connection.executemany(
                    "INSERT OR REPLACE INTO pages (stream, last, events, end) VALUES (?, ?, ?, ?)",
                    [(p.stream, p.last, events_json(p.events), p.end) for p in pages],
                )

    def head(self, id: str) -> Head | None:
        with self._lock:
            row = (
                self._connect()
                .execute(
                    "SELECT id, owner, chat, started_at, ends_by FROM streams WHERE id = ?", (id,)
                )
                .fetchone()
            )
        return Head(*row) if row is not None else None

    def pages(self, id: str, after: int) -> list[Page]:
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT last, events, end FROM pages WHERE stream = ? AND last > ? "
                    "ORDER BY last",
                    (id, after),
                )
                .fetchall()
            )
        return [Page(id, last, events_of(events), bool(end)) for last, events, end in rows]

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

    def stopped(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        with self._lock:
            rows = (
                self._connect()
                .execute(f"SELECT id FROM streams WHERE stopped AND id IN ({marks})", tuple(ids))
                .fetchall()
            )
        return {str(row[0]) for row in rows}

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
