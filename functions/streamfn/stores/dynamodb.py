"""Usage records in DynamoDB (Lambda; the SAM template's table).

Items are keyed by `request_id`, so a retried write replaces rather than duplicates, and carry
`day` (UTC, for queries and exports) and `expires_at` (the table's TTL attribute).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamfn.usage import UsageRecord

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

TTL_ATTRIBUTE = "expires_at"


def item(record: UsageRecord, ttl_days: int) -> dict[str, Any]:
    """The DynamoDB item (attribute-value form) for a record."""
    from boto3.dynamodb.types import TypeSerializer

    values: dict[str, Any] = {
        # DynamoDB numbers are decimals; floats must go through str to stay exact.
        k: Decimal(str(v)) if isinstance(v, float) else v
        for k, v in record.fields().items()
        if v is not None
    }
    values["day"] = datetime.fromtimestamp(record.started_at, UTC).date().isoformat()
    values[TTL_ATTRIBUTE] = int(record.started_at) + ttl_days * 86400
    serialize = TypeSerializer().serialize
    return {k: serialize(v) for k, v in values.items()}


class DynamoDBUsageStore:
    """boto3 has no asyncio API, so each write is a worker thread's PutItem
    (`asyncio.to_thread`); boto3 clients are thread-safe. The client (and the boto3 import, a
    few hundred milliseconds) comes on the first write, so it never lengthens a cold start.
    Endpoint and credentials come from boto3's usual sources (`AWS_ENDPOINT_URL_DYNAMODB` too).
    """

    def __init__(self, table: str, *, ttl_days: int, timeout_s: float = 10) -> None:
        self.table = table
        self._ttl_days = ttl_days
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: DynamoDBClient | None = None

    def _dynamodb(self) -> DynamoDBClient:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=min(self._timeout_s, 3),
                    read_timeout=self._timeout_s,
                    retries={"mode": "standard", "max_attempts": 3},
                )
                self._client = boto3.client("dynamodb", config=config)
            return self._client

    def write_sync(self, record: UsageRecord) -> None:
        self._dynamodb().put_item(TableName=self.table, Item=item(record, self._ttl_days))

    async def write(self, record: UsageRecord) -> None:
        await asyncio.to_thread(self.write_sync, record)

    async def aclose(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
