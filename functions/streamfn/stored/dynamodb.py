"""Stored responses in the stream log's DynamoDB table (Lambda; the SAM template's StreamsTable).

Each response is a partition of its own, `stream` = `response#<id>`: a stream id has no `#`
(`resume.STREAM_ID`) and a chat's key starts `chat#`, so no key of the log is ever one of these.
Its body is compressed (zlib) and cut into parts that each fit in an item, which DynamoDB
limits to 400 KB, names and values together
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items):

- the head at `seq` 0: `owner`, `created_at`, `expires` (exact; `ttl` is whole seconds), the
  put's generation `gen`, how many `parts` the body has, and the first of them in `data`;
- the others at `seq` = `gen` * 10000 + 1, + 2, ..., each its `data`.

One Query of the partition (consistent reads, in pages of at most 1 MB followed by
`LastEvaluatedKey`: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html)
reads the head first, since items come in `seq` order, then the parts. A put writes the new
generation's parts first, then the head (PutItem, which returns the head it replaced), then
deletes the replaced generation's parts: a reader never finds a head whose parts are not yet
written, and the few that race a replacement read again.

Every item carries the table's TTL attribute, `ttl`. DynamoDB deletes expired items only
eventually, and until then they "still show up in reads, queries, and scans"
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html), so
reads check `expires` themselves.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from streamfn.resume.dynamodb import TTL_ATTRIBUTE
from streamfn.stored import Stored, StoredUnavailable
from streamfn.stores.dynamodb import LazyClient

logger = logging.getLogger(__name__)

T = TypeVar("T")

_PREFIX = "response#"
# Room for the head's other attributes within an item's 400 KB.
_PART_BYTES = 384 << 10
_SPAN = 10_000  # a generation's parts are numbered below the next generation's first
# A partition key's value is at most 2048 bytes (the ServiceQuotas page above): a longer id
# cannot have been stored.
_MAX_KEY_BYTES = 2048
# BatchWriteItem takes at most 25 requests and 16 MB as sent, where binary values are base64
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html):
# 25 parts are 12.8 MB of it.
_BATCH = 25
_ATTEMPTS = 5
_READS = 3  # Queries of a response whose parts were being replaced meanwhile


def _key(id: str, seq: int = 0) -> dict[str, Any]:
    return {"stream": {"S": _PREFIX + id}, "seq": {"N": str(seq)}}


def _keyable(id: str) -> bool:
    return len((_PREFIX + id).encode()) <= _MAX_KEY_BYTES


def _part_keys(id: str, head: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys of the parts after the first of the body whose head is `head`."""
    gen, parts = int(head["gen"]["N"]), int(head["parts"]["N"])
    return [_key(id, gen * _SPAN + i) for i in range(1, parts)]


def _reason(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


class DynamoDBResponses:
    """boto3 has no asyncio API: each call is a worker thread's, on a `LazyClient` (the stream
    log's kind) made at `prepare` or the first call."""

    def __init__(self, table: str, *, ttl_s: float, timeout_s: float = 10) -> None:
        self.table = table
        self._ttl_s = ttl_s
        self._dynamodb = LazyClient(timeout_s)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(work, *args)
        except (BotoCoreError, ClientError) as exc:
            raise StoredUnavailable(
                f"stored responses cannot be reached just now (DynamoDB table {self.table}: "
                f"{_reason(exc)})"
            ) from exc

    async def prepare(self) -> None:
        await self._run(self._dynamodb)  # loading the service model takes tens of milliseconds

    def _write(self, requests: Sequence[dict[str, Any]]) -> None:
        """`requests` (PutRequest, DeleteRequest) in BatchWriteItem calls, what DynamoDB left
        unprocessed sent again after a back-off, as its guide asks."""
        dynamodb = self._dynamodb()
        for start in range(0, len(requests), _BATCH):
            left: list[Any] = list(requests[start : start + _BATCH])
            for attempt in range(_ATTEMPTS):
                answer = dynamodb.batch_write_item(RequestItems={self.table: left})
                left = answer.get("UnprocessedItems", {}).get(self.table, [])
                if not left:
                    break
                time.sleep(0.05 * 2**attempt)  # a worker thread's
            else:
                raise StoredUnavailable(
                    f"stored responses cannot be written just now (DynamoDB table "
                    f"{self.table}: {len(left)} items left unwritten after retries)"
                )

    def _discard(self, keys: Sequence[dict[str, Any]]) -> None:
        """Delete parts no head names any more; those left (the call failed) expire."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._write([{"DeleteRequest": {"Key": key}} for key in keys])
        except (BotoCoreError, ClientError, StoredUnavailable) as exc:
            logger.warning(
                "%s parts of a replaced or deleted response are left to expire: %s",
                len(keys),
                _reason(exc),
            )

    def _put(self, stored: Stored, expires: float) -> None:
        if not _keyable(stored.id):
            raise ValueError(f"a response id of {len(stored.id)} characters is too long")
        data = zlib.compress(stored.body.encode())
        parts = [data[i : i + _PART_BYTES] for i in range(0, len(data), _PART_BYTES)]
        if len(parts) >= _SPAN:
            raise ValueError(f"a body of {len(stored.body)} characters is too large to store")
        gen = secrets.randbits(40) + 1
        ttl = {"N": str(math.ceil(expires))}  # the TTL attribute: epoch seconds, a Number
        self._write(
            [
                {
                    "PutRequest": {
                        "Item": {
                            **_key(stored.id, gen * _SPAN + i),
                            "data": {"B": part},
                            TTL_ATTRIBUTE: ttl,
                        }
                    }
                }
                for i, part in enumerate(parts[1:], 1)
            ]
        )
        head = {
            **_key(stored.id),
            "owner": {"S": stored.owner},
            "created_at": {"N": repr(stored.created_at)},
            "expires": {"N": repr(expires)},
            "gen": {"N": str(gen)},
            "parts": {"N": str(len(parts))},
            "data": {"B": parts[0]},
            TTL_ATTRIBUTE: ttl,
        }
        replaced = (
            self._dynamodb()
            .put_item(TableName=self.table, Item=head, ReturnValues="ALL_OLD")
            .get("Attributes")
        )
        if replaced and "gen" in replaced:
            self._discard(_part_keys(stored.id, replaced))

    async def put(self, stored: Stored, *, ttl_s: float) -> None:
        await self._run(self._put, stored, time.time() + min(ttl_s, self._ttl_s))

    def _read(self, id: str, owner: str) -> tuple[dict[str, Any], dict[int, bytes]] | None:
        """The head and the parts of response `id`, if it is `owner`'s and has not expired."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#stream = :stream",
            "ExpressionAttributeNames": {"#stream": "stream"},
            "ExpressionAttributeValues": {":stream": {"S": _PREFIX + id}},
            "ConsistentRead": True,
        }
        head: dict[str, Any] | None = None
        parts: dict[int, bytes] = {}
        while True:
            page = self._dynamodb().query(**kwargs)
            for item in page.get("Items", []):
                seq = int(item["seq"]["N"])
                if head is None:
                    # The head sorts first: without it there is no response, only parts that
                    # outlived it (they expire).
                    if seq != 0 or item["owner"]["S"] != owner:
                        return None
                    if float(item["expires"]["N"]) <= time.time():
                        return None
                    head = item
                else:
                    parts[seq] = item["data"]["B"]
            if "LastEvaluatedKey" not in page:
                return None if head is None else (head, parts)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _get(self, id: str, owner: str) -> Stored | None:
        if not _keyable(id):
            return None
        for _ in range(_READS):
            found = self._read(id, owner)
            if found is None:
                return None
            head, parts = found
            wanted = [int(key["seq"]["N"]) for key in _part_keys(id, head)]
            if all(seq in parts for seq in wanted):
                data = head["data"]["B"] + b"".join(parts[seq] for seq in wanted)
                body = zlib.decompress(data).decode()
                return Stored(id, owner, float(head["created_at"]["N"]), body)
            # Replaced while it was read: the parts read were deleted after the new head was
            # written; the next Query has the new head and its parts.
        raise StoredUnavailable(
            f"stored response {id} was being replaced too fast to be read (DynamoDB table "
            f"{self.table})"
        )

    async def get(self, id: str, owner: str) -> Stored | None:
        return await self._run(self._get, id, owner)

    def _delete(self, id: str, owner: str) -> bool:
        if not _keyable(id):
            return False
        dynamodb = self._dynamodb()
        try:
            answer = dynamodb.delete_item(
                TableName=self.table,
                Key=_key(id),
                ConditionExpression="#owner = :owner AND #expires > :now",
                ExpressionAttributeNames={"#owner": "owner", "#expires": "expires"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":now": {"N": repr(time.time())},
                },
                ReturnValues="ALL_OLD",
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return False  # not there, expired, or another's: nothing deleted
        self._discard(_part_keys(id, answer["Attributes"]))
        return True

    async def delete(self, id: str, owner: str) -> bool:
        return await self._run(self._delete, id, owner)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._dynamodb.close)
