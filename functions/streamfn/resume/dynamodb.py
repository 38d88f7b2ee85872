"""The stream log in DynamoDB (Lambda; the SAM template's StreamsTable).

One partition per stream, keyed `stream` and `seq`:

- the head at `seq` 0: owner, chat, started_at, ends_by and, once asked, `stopped`;
- one item per page of events at `seq` = the number of its last event, the events a JSON array
  of `[name, data]` in `events`, `end` on the final page;
- a chat's latest stream at (`chat#<owner>#<chat>`, 0), in `latest`.

Every item carries `ttl` (the table's TTL attribute). Pages go in BatchWriteItem calls of up to
25 items (the API's limit), with what DynamoDB left unprocessed sent again; followers Query with
consistent reads, so a page written is a page seen.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from streamfn.resume import Head, Page
from streamfn.resume.sqlite import events_json, events_of
from streamfn.stores.dynamodb import LazyClient

TTL_ATTRIBUTE = "ttl"
_BATCH = 25  # BatchWriteItem's most items per call
_KEYS = 100  # BatchGetItem's
_ATTEMPTS = 5


class LogUnavailable(Exception):
    pass


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _key(stream: str, seq: int = 0) -> dict[str, Any]:
    return {"stream": _s(stream), "seq": _n(seq)}


class DynamoDBStreamLog:
    poll_s = 0.25

    def __init__(self, table: str, *, ttl_s: float, timeout_s: float = 10) -> None:
        self.table = table
        self._ttl_s = int(ttl_s)
        self._dynamodb = LazyClient(timeout_s)

    def prepare(self) -> None:
        self._dynamodb()  # loading the service model takes tens of milliseconds

    def _items(self, heads: Sequence[Head], pages: Sequence[Page]) -> list[dict[str, Any]]:
        expires = _n(int(time.time()) + self._ttl_s)
        items: list[dict[str, Any]] = []
        for h in heads:
            head = {
                **_key(h.id),
                "owner": _s(h.owner),
                "started_at": _n(h.started_at),
                "ends_by": _n(h.ends_by),
                TTL_ATTRIBUTE: expires,
            }
            if h.chat is not None:
                head["chat"] = _s(h.chat)
                items.append(
                    {**_key(f"chat#{h.owner}#{h.chat}"), "latest": _s(h.id), TTL_ATTRIBUTE: expires}
                )
            items.append(head)
        for p in pages:
            page = {**_key(p.stream, p.last), "events": _s(events_json(p.events))}
            if p.end:
                page["end"] = {"BOOL": True}
            items.append({**page, TTL_ATTRIBUTE: expires})
        return items

    def write(self, heads: Sequence[Head], pages: Sequence[Page]) -> None:
        items = self._items(heads, pages)
        dynamodb = self._dynamodb()
        for start in range(0, len(items), _BATCH):
            batch = items[start : start + _BATCH]
            requests: list[Any] = [{"PutRequest": {"Item": i}} for i in batch]
            for attempt in range(_ATTEMPTS):
                left = dynamodb.batch_write_item(RequestItems={self.table: requests})
                requests = left.get("UnprocessedItems", {}).get(self.table, [])
                if not requests:
                    break
                time.sleep(0.05 * 2**attempt)  # throttled: back off, as AWS's guide asks
            else:
                raise LogUnavailable(f"{len(requests)} items left unwritten after retries")

    def head(self, id: str) -> Head | None:
        item = self._dynamodb().get_item(TableName=self.table, Key=_key(id), ConsistentRead=True)
        found = item.get("Item")
        if found is None or "owner" not in found:
            return None
        chat = found.get("chat")
        return Head(
            id=id,
            owner=found["owner"]["S"],
            chat=chat["S"] if chat else None,
            started_at=float(found["started_at"]["N"]),
            ends_by=float(found["ends_by"]["N"]),
        )

    def pages(self, id: str, after: int) -> list[Page]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#stream = :stream AND #seq > :after",
            "ExpressionAttributeNames": {"#stream": "stream", "#seq": "seq"},
            "ExpressionAttributeValues": {":stream": _s(id), ":after": _n(max(after, 0))},
            "ConsistentRead": True,
        }
        out: list[Page] = []
        while True:
            found = self._dynamodb().query(**kwargs)
            for item in found.get("Items", []):
                out.append(
                    Page(
                        id,
                        int(item["seq"]["N"]),
                        events_of(item["events"]["S"]),
                        bool(item.get("end", {}).get("BOOL")),
                    )
                )
            if "LastEvaluatedKey" not in found:
                return out
            kwargs["ExclusiveStartKey"] = found["LastEvaluatedKey"]

    def latest(self, owner: str, chat: str) -> str | None:
        found = self._dynamodb().get_item(
            TableName=self.table, Key=_key(f"chat#{owner}#{chat}"), ConsistentRead=True
        )
        item = found.get("Item")
        return item["latest"]["S"] if item else None

    def stop(self, id: str) -> None:
        dynamodb = self._dynamodb()
        # No such stream (any more): nothing to stop.
        with contextlib.suppress(dynamodb.exceptions.ConditionalCheckFailedException):
            dynamodb.update_item(
                TableName=self.table,
                Key=_key(id),
                UpdateExpression="SET stopped = :yes",
                ConditionExpression="attribute_exists(#owner)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":yes": {"BOOL": True}},
            )

    def stopped(self, ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        dynamodb = self._dynamodb()
        for start in range(0, len(ids), _KEYS):
            keys: list[Any] = [_key(i) for i in ids[start : start + _KEYS]]
            for attempt in range(_ATTEMPTS):
                found: dict[str, Any] = dynamodb.batch_get_item(  # type: ignore[assignment]
                    RequestItems={
                        self.table: {
                            "Keys": keys,
                            "ProjectionExpression": "#stream, stopped",
                            "ExpressionAttributeNames": {"#stream": "stream"},
                        }
                    }
                )
                for item in found.get("Responses", {}).get(self.table, []):
                    if item.get("stopped", {}).get("BOOL"):
                        out.add(item["stream"]["S"])
                keys = (found.get("UnprocessedKeys") or {}).get(self.table, {}).get("Keys", [])
                if not keys:
                    break
                time.sleep(0.05 * 2**attempt)
        return out

    def close(self) -> None:
        self._dynamodb.close()
