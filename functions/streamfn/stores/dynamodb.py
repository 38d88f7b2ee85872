"""Usage records in DynamoDB (Lambda; the SAM template's table).

Items are keyed by `request_id`, so a retried write replaces rather than duplicates, and carry
`day` (UTC, for queries and exports) and `expires_at` (the table's TTL attribute).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from streamfn.usage import FAILED, Totals, UsageRecord

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient

TTL_ATTRIBUTE = "expires_at"
# The index `streamfn usage` queries, one UTC day at a time (template.yaml declares it): `day`
# as its partition key, `started_at` as its sort key, the counted attributes projected. A query
# of it reads what it projects, so a record's other attributes are never read.
DAY_INDEX = "by-day"
COUNTED = (
    "provider",
    "model",
    "outcome",
    "input_tokens",
    "output_tokens",
    "usage_estimated",
)
# Not projected by the index, which was made before records had a cost: CloudFormation cannot
# change an existing index's projection ("Cannot update GSI's properties other than Provisioned
# Throughput and Contributor Insights Specification"), nor drop one and add another in one
# update, so every deployed stack would fail to update. A record the index shows without it is
# read from the table by its key (BatchGetItem), which also tells an unpriced record (no
# cost_usd in the table either: an unknown model) from one the index does not show.
COST = "cost_usd"
_BATCH = 100  # BatchGetItem's most keys a call


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


class LazyClient:
    """A DynamoDB client made on first use, shared by threads (boto3 clients are thread-safe),
    that gives up after `timeout_s` per call with boto3's standard retries. boto3 (a few hundred
    milliseconds to import) is imported then, so it never lengthens a cold start. Endpoint and
    credentials come from boto3's usual sources (`AWS_ENDPOINT_URL_DYNAMODB` too)."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: DynamoDBClient | None = None

    def __call__(self) -> DynamoDBClient:
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

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _ordinal(day: str) -> int:
    return date.fromisoformat(day).toordinal()


class DynamoDBUsageStore:
    """boto3 has no asyncio API, so each write is a worker thread's PutItem
    (`asyncio.to_thread`), on a `LazyClient` made at the first write."""

    def __init__(self, table: str, *, ttl_days: int, timeout_s: float = 10) -> None:
        self.table = table
        self._ttl_days = ttl_days
        self._dynamodb = LazyClient(timeout_s)

    def write_sync(self, record: UsageRecord) -> None:
        self._dynamodb().put_item(TableName=self.table, Item=item(record, self._ttl_days))

    async def write(self, record: UsageRecord) -> None:
        await asyncio.to_thread(self.write_sync, record)

    def totals(self, days: int, now: float | None = None) -> list[Totals]:
        """Totals per day, provider and model over the last `days` UTC days (today included),
        newest first: one Query of the day index per day, never a scan."""
        today = datetime.fromtimestamp(time.time() if now is None else now, UTC).date()
        sums: dict[tuple[str, str, str], list[int]] = {}
        costs: dict[tuple[str, str, str], Decimal] = {}
        for back in range(days):
            day = (today - timedelta(days=back)).isoformat()
            records = list(self._day(day))
            unseen = [str(r["request_id"]) for r in records if COST not in r]
            priced = self._costs(unseen) if unseen else {}
            for found in records:
                key = (day, str(found["provider"]), str(found["model"]))
                row = sums.setdefault(key, [0] * 6)
                cost = found.get(COST, priced.get(str(found["request_id"])))
                if cost is not None:
                    costs[key] = costs.get(key, Decimal(0)) + Decimal(cost)
                outcome = found.get("outcome")
                for i, value in enumerate(
                    (
                        1,
                        int(found.get("input_tokens", 0)),
                        int(found.get("output_tokens", 0)),
                        int(bool(found.get("usage_estimated"))),
                        int(outcome in FAILED),
                        int(outcome == "cancelled"),
                    )
                ):
                    row[i] += value
        ordered = sorted(sums.items(), key=lambda kv: (-_ordinal(kv[0][0]), kv[0][1], kv[0][2]))
        return [
            replace(Totals(*key, *values), cost_usd=float(costs[key]) if key in costs else None)
            for key, values in ordered
        ]

    def _day(self, day: str) -> Iterator[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        deserialize = TypeDeserializer().deserialize
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": DAY_INDEX,
            "KeyConditionExpression": "#day = :day",
            "ExpressionAttributeNames": {"#day": "day"},
            "ExpressionAttributeValues": {":day": {"S": day}},
        }
        while True:
            page = self._dynamodb().query(**kwargs)
            for raw in page.get("Items", []):
                yield {k: deserialize(v) for k, v in raw.items()}
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _costs(self, request_ids: list[str]) -> dict[str, Any]:
        """The `cost_usd` of these records, read from the table; those without one are absent."""
        from boto3.dynamodb.types import TypeDeserializer

        deserialize = TypeDeserializer().deserialize
        found: dict[str, Any] = {}
        for start in range(0, len(request_ids), _BATCH):
            wanted: dict[str, Any] = {
                self.table: {
                    "Keys": [{"request_id": {"S": r}} for r in request_ids[start : start + _BATCH]],
                    "ProjectionExpression": "request_id, #cost",
                    "ExpressionAttributeNames": {"#cost": COST},
                }
            }
            delay_s = 0.05
            while wanted:
                page = self._dynamodb().batch_get_item(RequestItems=wanted)
                for raw in page.get("Responses", {}).get(self.table, []):
                    if COST in raw:
                        found[raw["request_id"]["S"]] = deserialize(raw[COST])
                # Keys DynamoDB did not get to (throttled, or past 16 MB): asked again, with
                # the backoff AWS asks for.
                wanted = dict(page.get("UnprocessedKeys") or {})
                if wanted:
                    time.sleep(delay_s)
                    delay_s = min(delay_s * 2, 1.0)
        return found

    async def aclose(self) -> None:
        await asyncio.to_thread(self._dynamodb.close)
