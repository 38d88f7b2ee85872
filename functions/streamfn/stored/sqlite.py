"""Stored responses in the stream log's SQLite file (uvicorn, `make run`, self-hosting), in a
table of their own, `responses`.

Expired rows are never read (every read checks `expires_at`) and are deleted as they are met:
the whole table's every few seconds on a put, and one found expired on a get. The
file's settings are the stream log's (WAL, incremental auto-vacuum, a bounded journal), set here
too since either may make the file, and auto-vacuum only takes on a file before its first table.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from streamfn.stored import Stored, StoredUnavailable

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_expires_at ON responses (expires_at);
"""

_PRUNE_EVERY_S = 5.0


class SqliteResponses:
    """One connection, opened on first use and shared under a lock; each call runs in a worker
    thread (sqlite3 blocks)."""

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
            try:
                connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute(f"PRAGMA journal_size_limit={64 << 20}")
                connection.executescript(_SCHEMA)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._connect())

        try:
            return await asyncio.to_thread(locked)
        except (sqlite3.OperationalError, OSError) as exc:
            # Locked past the timeout, a full disk, a directory that cannot be made.
            raise StoredUnavailable(
                f"stored responses cannot be reached just now (SQLite at {self.path}: {exc})"
            ) from exc

    async def prepare(self) -> None:
        await self._run(lambda _: None)

    async def put(self, stored: Stored, *, ttl_s: float) -> None:
        expires_at = time.time() + min(ttl_s, self._ttl_s)

        def put(connection: sqlite3.Connection) -> None:
            with connection:
                pruned = self._prune(connection)
                connection.execute(
                    "INSERT OR REPLACE INTO responses (id, owner, created_at, expires_at, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (stored.id, stored.owner, stored.created_at, expires_at, stored.body),
                )
            if pruned:
                connection.execute("PRAGMA incremental_vacuum")

        await self._run(put)

    def _prune(self, connection: sqlite3.Connection) -> bool:
        """Delete the expired rows, every `_PRUNE_EVERY_S` at most; whether any were."""
        now = time.time()
        if now - self._pruned < _PRUNE_EVERY_S:
            return False
        self._pruned = now
        deleted = connection.execute("DELETE FROM responses WHERE expires_at <= ?", (now,))
        return deleted.rowcount > 0

    async def get(self, id: str, owner: str) -> Stored | None:
        def get(connection: sqlite3.Connection) -> Stored | None:
            now = time.time()
            row = connection.execute(
                "SELECT owner, created_at, expires_at, body FROM responses WHERE id = ?", (id,)
            ).fetchone()
            if row is None:
                return None
            found_owner, created_at, expires_at, body = row
            if expires_at <= now:
                with connection:
                    connection.execute(
                        "DELETE FROM responses WHERE id = ? AND expires_at <= ?", (id, now)
                    )
                return None
            if found_owner != owner:
                return None
            return Stored(id, owner, float(created_at), str(body))

        return await self._run(get)

    async def delete(self, id: str, owner: str) -> bool:
        def delete(connection: sqlite3.Connection) -> bool:
            with connection:
                deleted = connection.execute(
                    "DELETE FROM responses WHERE id = ? AND owner = ? AND expires_at > ?",
                    (id, owner, time.time()),
                ).rowcount
            return deleted > 0

        return await self._run(delete)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        await asyncio.to_thread(close)
