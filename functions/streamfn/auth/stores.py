"""Key stores: a SQLite file locally (`STREAMFN_KEYS_DB`), PostgreSQL for a fleet
(`STREAMFN_DATABASE_URL`), a DynamoDB table in AWS (`STREAMFN_KEYS_TABLE`). Each implements
`streamfn.auth.keys.KeyStore`."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamfn.auth.keys import ApiKey

if TYPE_CHECKING:
    from types_boto3_dynamodb.service_resource import Table

    from streamfn.postgres import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (name TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    limits TEXT NOT NULL
);
"""


class SqliteKeyStore:
    """The connection opens on first use and again after `aclose`, so an app that lives through
    more than one lifespan (test clients do that) keeps working."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def _db(self) -> sqlite3.Connection:
        # Called with the lock held.
        if self._connection is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(
                self._path, check_same_thread=False, isolation_level=None
            )
            self._connection.executescript(_SCHEMA)
        return self._connection

    def _run(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @staticmethod
    def _record(row: tuple[Any, ...]) -> ApiKey:
        id, name, hash, created, expires, revoked, limits = row
        return ApiKey(id, name, hash, created, expires, revoked, json.loads(limits))

    async def get(self, id: str) -> ApiKey | None:
        rows = await asyncio.to_thread(self._run, "SELECT * FROM api_keys WHERE id = ?", id)
        return self._record(rows[0]) if rows else None

    async def put(self, record: ApiKey) -> None:
        await asyncio.to_thread(
            self._run,
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
            record.id,
            record.name,
            record.hash,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            json.dumps(record.limits),
        )

    async def all(self) -> list[ApiKey]:
        rows = await asyncio.to_thread(self._run, "SELECT * FROM api_keys ORDER BY created_at")
        return [self._record(row) for row in rows]

    async def revoke(self, id: str, at: float) -> bool:
        def update() -> bool:
            with self._lock:
                cursor = self._db.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (at, id),
                )
                return cursor.rowcount == 1

        return await asyncio.to_thread(update)

    async def claim(self, name: str, expires_at: float) -> bool:
        def insert() -> bool:
            with self._lock:
                self._db.execute("DELETE FROM claims WHERE expires_at < ?", (time.time(),))
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO claims VALUES (?, ?)", (name, expires_at)
                )
                return cursor.rowcount == 1

        return await asyncio.to_thread(insert)

    async def secret(self, name: str) -> bytes:
        def get_or_make() -> bytes:
            with self._lock:
                self._db.execute(
                    "INSERT OR IGNORE INTO secrets VALUES (?, ?)", (name, secrets.token_bytes(32))
                )
                row = self._db.execute("SELECT value FROM secrets WHERE name = ?", (name,))
                return bytes(row.fetchone()[0])

        return await asyncio.to_thread(get_or_make)

    async def aclose(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


class DynamoDBKeyStore:
    """Keys as items keyed by `key_id`; the function reads them (GetItem), the operator's
    `streamfn keys` writes them."""

    def __init__(self, table: str, *, endpoint_url: str | None = None) -> None:
        import boto3  # imported on use: the SDK is heavy and only AWS needs it

        self._table: Table = boto3.resource("dynamodb", endpoint_url=endpoint_url).Table(table)

    async def get(self, id: str) -> ApiKey | None:
        item = (await asyncio.to_thread(self._table.get_item, Key={"key_id": id})).get("Item")
        return None if item is None else self._record(item)

    @staticmethod
    def _record(item: Mapping[str, Any]) -> ApiKey:
        return ApiKey(
            id=str(item["key_id"]),
            name=str(item["name"]),
            hash=str(item["hash"]),
            created_at=float(str(item["created_at"])),
            expires_at=float(str(item["expires_at"])) if item.get("expires_at") else None,
            revoked_at=float(str(item["revoked_at"])) if item.get("revoked_at") else None,
            limits=json.loads(str(item.get("limits") or "{}")),
        )

    async def put(self, record: ApiKey) -> None:
        item: dict[str, Any] = {
            "key_id": record.id,
            "name": record.name,
            "hash": record.hash,
            "created_at": str(record.created_at),
            "limits": json.dumps(record.limits),
        }
        if record.expires_at is not None:
            item["expires_at"] = str(record.expires_at)
        await asyncio.to_thread(
            self._table.put_item, Item=item, ConditionExpression="attribute_not_exists(key_id)"
        )

    async def all(self) -> list[ApiKey]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = await asyncio.to_thread(self._table.scan, **kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # Claims and secrets share the table under `claim#...` and `secret#...`.
        records = [self._record(item) for item in items if "#" not in str(item["key_id"])]
        return sorted(records, key=lambda r: r.created_at)

    async def revoke(self, id: str, at: float) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(
                self._table.update_item,
                Key={"key_id": id},
                UpdateExpression="SET revoked_at = :at",
                ConditionExpression="attribute_exists(key_id) AND attribute_not_exists(revoked_at)",
                ExpressionAttributeValues={":at": str(at)},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def claim(self, name: str, expires_at: float) -> bool:
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(
                self._table.put_item,
                # `expires_at` as the table's TTL attribute would have it: DynamoDB removes it.
                Item={"key_id": f"claim#{name}", "ttl": int(expires_at) + 60},
                ConditionExpression="attribute_not_exists(key_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def secret(self, name: str) -> bytes:
        from botocore.exceptions import ClientError

        key = {"key_id": f"secret#{name}"}
        try:
            await asyncio.to_thread(
                self._table.put_item,
                Item={**key, "value": secrets.token_hex(32)},
                ConditionExpression="attribute_not_exists(key_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        item = (await asyncio.to_thread(self._table.get_item, Key=key, ConsistentRead=True))["Item"]
        return bytes.fromhex(str(item["value"]))

    async def aclose(self) -> None:
        """boto3 holds no connection that needs closing."""


class PostgresKeyStore:
    """Keys, claims and secrets in the PostgreSQL a fleet shares (`STREAMFN_DATABASE_URL`)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    @staticmethod
    def _record(row: tuple[Any, ...]) -> ApiKey:
        id, name, hash, created, expires, revoked, limits = row
        return ApiKey(id, name, hash, created, expires, revoked, dict(limits or {}))

    async def get(self, id: str) -> ApiKey | None:
        rows = await self._db.execute("SELECT * FROM api_keys WHERE id = %s", (id,))
        return self._record(rows[0]) if rows else None

    async def put(self, record: ApiKey) -> None:
        await self._db.execute(
            "INSERT INTO api_keys VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                record.id,
                record.name,
                record.hash,
                record.created_at,
                record.expires_at,
                record.revoked_at,
                json.dumps(record.limits),
            ),
        )

    async def all(self) -> list[ApiKey]:
        rows = await self._db.execute("SELECT * FROM api_keys ORDER BY created_at")
        return [self._record(row) for row in rows]

    async def revoke(self, id: str, at: float) -> bool:
        changed = await self._db.rowcount(
            "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (at, id)
        )
        return changed == 1

    async def claim(self, name: str, expires_at: float) -> bool:
        await self._db.execute("DELETE FROM claims WHERE expires_at < %s", (time.time(),))
        changed = await self._db.rowcount(
            "INSERT INTO claims VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (name, expires_at)
        )
        return changed == 1

    async def secret(self, name: str) -> bytes:
        await self._db.execute(
            "INSERT INTO secrets VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
            (name, secrets.token_bytes(32)),
        )
        rows = await self._db.execute("SELECT value FROM secrets WHERE name = %s", (name,))
        return bytes(rows[0][0])

    async def aclose(self) -> None:
        await self._db.aclose()
