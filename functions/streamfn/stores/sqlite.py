"""Usage records in a local SQLite file (uvicorn, `make run`, self-hosting)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from streamfn.stores.batches import Batches
from streamfn.usage import FAILED, Totals, UsageRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    identity TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    usage_estimated INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    ttft_ms REAL,
    finish_reason TEXT,
    error_type TEXT,
    client_disconnected INTEGER NOT NULL,
    cached_input_tokens INTEGER,
    cache_creation_input_tokens INTEGER,
    reasoning_tokens INTEGER,
    cost_usd REAL
);
CREATE INDEX IF NOT EXISTS usage_started_at ON usage (started_at);
"""
# Columns a file made by an older streamfn lacks, added when it is opened.
_ADDED = {
    "cached_input_tokens": "INTEGER",
    "cache_creation_input_tokens": "INTEGER",
    "reasoning_tokens": "INTEGER",
    "cost_usd": "REAL",
}

_COLUMNS = tuple(UsageRecord.__dataclass_fields__)
# A request's record is opened at its start and replaced when it settles.
_INSERT = (
    f"INSERT OR REPLACE INTO usage ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)

# Totals per UTC day, provider and model, newest day first.
_TOTALS = f"""
SELECT date(started_at, 'unixepoch') AS day, provider, model,
       count(*), sum(input_tokens), sum(output_tokens), sum(usage_estimated),
       sum(outcome IN ({", ".join(f"'{o}'" for o in sorted(FAILED))})), sum(outcome = 'cancelled'),
       sum(cost_usd)
FROM usage WHERE started_at >= ?
GROUP BY day, provider, model
ORDER BY day DESC, provider, model
"""


class SqliteUsageStore:
    """One connection, opened on first use. sqlite3 blocks, so writes run in a worker thread
    and the event loop never waits on the disk; a lock serialises them. Records that come
    while one transaction commits go together in the next (`Batches`): a request writes two
    (opened, then settled), and a thousand streams ending together were a thousand commits.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._batches: Batches[UsageRecord] = Batches(self.write_many_sync)

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
            # WAL lets `streamfn usage` read while the server writes.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            present = {row[1] for row in connection.execute("PRAGMA table_info(usage)")}
            with connection:
                for name, kind in _ADDED.items():
                    if name not in present:
                        try:
                            connection.execute(f"ALTER TABLE usage ADD COLUMN {name} {kind}")
                        except sqlite3.OperationalError as exc:  # another process added it
                            if "duplicate column" not in str(exc):
                                raise
            self._connection = connection
        return self._connection

    def write_sync(self, record: UsageRecord) -> None:
        self.write_many_sync([record])

    def write_many_sync(self, records: Sequence[UsageRecord]) -> None:
        """`records` in one transaction, in order (a request's settled record replaces its
        opened one)."""
        with self._lock:
            connection = self._connect()
            with connection:
                connection.executemany(
                    _INSERT, [[getattr(r, c) for c in _COLUMNS] for r in records]
                )

    async def write(self, record: UsageRecord) -> None:
        await self._batches.write(record)

    def totals(self, since: float = 0) -> list[Totals]:
        """Totals per day, provider and model of the records started at or after `since`."""
        with self._lock:
            rows = self._connect().execute(_TOTALS, (since,)).fetchall()
        return [Totals(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    async def aclose(self) -> None:
        await self._batches.drain()
        await asyncio.to_thread(self.close)
