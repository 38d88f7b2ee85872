"""PostgreSQL for a fleet of servers (`STREAMFN_DATABASE_URL`): API keys and usage records in
one database every server shares, through psycopg 3 (asynchronous for the server, synchronous
for the `streamfn` command) and its connection pool.

The schema is streamfn's to make and to migrate: at first use each process applies the
migrations it knows and the database lacks, in order, each in a transaction under an advisory
lock (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS), so servers
starting together apply each once. `streamfn_schema` records the version reached.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from streamfn.errors import StoreUnavailable

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

logger = logging.getLogger(__name__)

# Long enough for a loaded server, short enough that a database that is down is a quick 503.
TIMEOUT_S = 5.0
_LOCK = 0x5F3E_A11F  # the advisory lock migrations run under (any fixed number of streamfn's)

# Each entry is one version: applied once, in order, never edited once released.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        limits JSONB NOT NULL DEFAULT '{}'
    );
    CREATE TABLE claims (name TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);
    CREATE TABLE secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
    CREATE TABLE usage (
        request_id TEXT PRIMARY KEY,
        started_at DOUBLE PRECISION NOT NULL,
        identity TEXT,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        status INTEGER NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        usage_estimated BOOLEAN NOT NULL,
        duration_ms DOUBLE PRECISION NOT NULL,
        ttft_ms DOUBLE PRECISION,
        finish_reason TEXT,
        error_type TEXT,
        client_disconnected BOOLEAN NOT NULL
    );
    CREATE INDEX usage_started_at ON usage (started_at);
    """,
    # What a request cost, and the parts of its tokens (#26).
    """
    ALTER TABLE usage
        ADD COLUMN cached_input_tokens BIGINT,
        ADD COLUMN cache_creation_input_tokens BIGINT,
        ADD COLUMN reasoning_tokens BIGINT,
        ADD COLUMN cost_usd DOUBLE PRECISION;
    """,
)


class DatabaseUnavailable(StoreUnavailable):
    """The database cannot be reached, or failed the statement: what needs it is refused (503)."""


def where(url: str) -> str:
    """`url` without its password, for log lines and errors."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


_MIGRATE = (
    "CREATE TABLE IF NOT EXISTS streamfn_schema (version INTEGER NOT NULL)",
    "SELECT pg_advisory_xact_lock(%s)",
    "SELECT coalesce(max(version), 0) FROM streamfn_schema",
)


async def _migrate(connection: psycopg.AsyncConnection[Any]) -> None:
    async with connection.transaction():
        await connection.execute(_MIGRATE[1], (_LOCK,))
        await connection.execute(_MIGRATE[0])
        cursor = await connection.execute(_MIGRATE[2])
        row = await cursor.fetchone()
        reached = int(row[0]) if row else 0
        for version, sql in enumerate(MIGRATIONS[reached:], start=reached + 1):
            await connection.execute(sql)
            await connection.execute("INSERT INTO streamfn_schema VALUES (%s)", (version,))
            logger.info("database schema migrated to version %s", version)


def migrate_sync(connection: psycopg.Connection[Any]) -> None:
    """The same migrations, on a synchronous connection (the `streamfn` command)."""
    with connection.transaction():
        connection.execute(_MIGRATE[1], (_LOCK,))
        connection.execute(_MIGRATE[0])
        row = connection.execute(_MIGRATE[2]).fetchone()
        reached = int(row[0]) if row else 0
        for version, sql in enumerate(MIGRATIONS[reached:], start=reached + 1):
            connection.execute(sql)
            connection.execute("INSERT INTO streamfn_schema VALUES (%s)", (version,))


class Database:
    """A pool per event loop (an asyncio connection belongs to the loop that opened it), opened
    and migrated on first use."""

    def __init__(self, url: str, *, max_connections: int = 20) -> None:
        self.url = url
        self.where = where(url)
        self._max = max_connections
        self._pools: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncConnectionPool[Any]
        ] = weakref.WeakKeyDictionary()
        self._migrated = False

    async def pool(self) -> AsyncConnectionPool[Any]:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            from psycopg_pool import AsyncConnectionPool  # imported on use: a fleet's only

            pool = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=self._max,
                open=False,
                timeout=TIMEOUT_S,
                # A connection is checked when it is taken: after a restart of the server the
                # pool's old connections are dropped and new ones made, not handed out broken.
                check=AsyncConnectionPool.check_connection,
                kwargs={"connect_timeout": int(TIMEOUT_S), "autocommit": True},
                name="streamfn",
            )
            self._pools[loop] = pool
            await pool.open(wait=False)
        if not self._migrated:
            async with pool.connection() as connection:
                await _migrate(connection)
            self._migrated = True
        return pool

    async def _run(self, sql: str, args: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
        """`sql`'s rows (none for a statement without) and how many rows it changed;
        `DatabaseUnavailable` on failure."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            pool = await self.pool()
            async with pool.connection() as connection:
                cursor = await connection.execute(sql, args)
                rows = await cursor.fetchall() if cursor.description else []
                return rows, int(cursor.rowcount)
        except (psycopg.OperationalError, PoolTimeout, OSError) as exc:
            raise DatabaseUnavailable(f"PostgreSQL at {self.where}: {type(exc).__name__}") from exc

    async def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """`sql`'s rows (none for a statement without); `DatabaseUnavailable` on failure."""
        return (await self._run(sql, args))[0]

    async def rowcount(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """How many rows `sql` changed."""
        return (await self._run(sql, args))[1]

    def connect_sync(self) -> psycopg.Connection[Any]:
        """A synchronous connection, the schema migrated (for the `streamfn` command)."""
        import psycopg

        connection = psycopg.connect(self.url, connect_timeout=int(TIMEOUT_S), autocommit=True)
        migrate_sync(connection)
        return connection

    async def aclose(self) -> None:
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()


_databases: dict[str, Database] = {}


def database(url: str) -> Database:
    """The process's `Database` for `url`: the key store and the usage store share its pools."""
    found = _databases.get(url)
    if found is None:
        found = _databases[url] = Database(url)
    return found
