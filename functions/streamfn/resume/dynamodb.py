"""The stream log in DynamoDB (Lambda; the SAM template's StreamsTable).

One partition per stream, keyed `stream` and `seq`:

- the head at `seq` 0: owner, chat, started_at, ends_by, will, the usage record as opened and,
  once asked, `stopped`; `ended` once another process ended it for a dead producer;
- the producer's lease at `seq` -1 and the presence of readers in other processes at `seq` -2,
  each an `until` its heartbeats push on (items of their own, so that a heartbeat is one
  BatchWriteItem for every stream of a process, where updating heads would be a call each);
- one item per page of events at `seq` = the number of its last event, the events a JSON array
  of `[name, data]` in `events`, `end` on the final page, with its `will` and `chars`;
- a chat's latest stream at (`chat#<owner>#<chat>`, 0), in `latest`.

Every item carries `ttl` (the table's TTL attribute). Pages go in BatchWriteItem calls of up to
25 items (the API's limit), with what DynamoDB left unprocessed sent again; followers Query with
consistent reads, so a page written is a page seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from streamfn.resume import LEASE_S, Beat, Head, LogUnavailable, Page
from streamfn.resume.sqlite import events_json, events_of
from streamfn.stores.dynamodb import LazyClient

TTL_ATTRIBUTE = "ttl"
_BATCH = 25  # BatchWriteItem's most items per call
_KEYS = 100  # BatchGetItem's
_ATTEMPTS = 5
_LEASE, _READERS = -1, -2  # the `seq` of a stream's lease item and of its readers' item


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _key(stream: str, seq: int = 0) -> dict[str, Any]:
    return {"stream": _s(stream), "seq": _n(seq)}


class DynamoDBStreamLog:
    poll_s = 0.25
    beat_s = 1.0  # a heartbeat is two calls: once a second keeps them cheap

    def __init__(self, table: str, *, ttl_s: float, timeout_s: float = 10) -> None:
        self.table = table
        self._ttl_s = int(ttl_s)
        self._dynamodb = LazyClient(timeout_s)

    def prepare(self) -> None:
        self._dynamodb()  # loading the service model takes tens of milliseconds

    def _items(self, heads: Sequence[Head], pages: Sequence[Page]) -> list[dict[str, Any]]:
        now = time.time()
        expires = _n(int(now) + self._ttl_s)
        items: list[dict[str, Any]] = []
        for h in heads:
            head = {
                **_key(h.id),
                "owner": _s(h.owner),
                "started_at": _n(h.started_at),
                "ends_by": _n(h.ends_by),
                "will": _s(events_json(h.will)),
                TTL_ATTRIBUTE: expires,
            }
            if h.record is not None:
                head["record"] = _s(h.record)
            items.append({**_key(h.id, _LEASE), "until": _n(now + LEASE_S), TTL_ATTRIBUTE: expires})
            if h.chat is not None:
                head["chat"] = _s(h.chat)
                items.append(
                    {**_key(f"chat#{h.owner}#{h.chat}"), "latest": _s(h.id), TTL_ATTRIBUTE: expires}
                )
            items.append(head)
        items += [{**self._page(p), TTL_ATTRIBUTE: expires} for p in pages]
        return items

    @staticmethod
    def _page(p: Page) -> dict[str, Any]:
        page = {
            **_key(p.stream, p.last),
            "events": _s(events_json(p.events)),
            "will": _s(events_json(p.will)),
            "chars": _n(p.chars),
        }
        if p.end:
            page["end"] = {"BOOL": True}
        return page

    def write(self, heads: Sequence[Head], pages: Sequence[Page]) -> None:
        self._put(self._items(heads, pages))

    def _put(self, items: Sequence[dict[str, Any]]) -> None:
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
        return _head(id, found)

    def pages(self, id: str, after: int, limit: int | None = None) -> list[Page]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#stream = :stream AND #seq > :after",
            "ExpressionAttributeNames": {"#stream": "stream", "#seq": "seq"},
            "ExpressionAttributeValues": {":stream": _s(id), ":after": _n(max(after, 0))},
            "ConsistentRead": True,
        }
        if limit is not None:
            kwargs["Limit"] = limit
        out: list[Page] = []
        while True:
            found = self._dynamodb().query(**kwargs)
            out += [_page(id, item) for item in found.get("Items", [])]
            if "LastEvaluatedKey" not in found or (limit is not None and len(out) >= limit):
                return out[:limit]
            kwargs["ExclusiveStartKey"] = found["LastEvaluatedKey"]

    def last_page(self, id: str) -> Page | None:
        found = self._dynamodb().query(
            TableName=self.table,
            KeyConditionExpression="#stream = :stream AND #seq > :zero",
            ExpressionAttributeNames={"#stream": "stream", "#seq": "seq"},
            ExpressionAttributeValues={":stream": _s(id), ":zero": _n(0)},
            ConsistentRead=True,
            ScanIndexForward=False,
            Limit=1,
        )
        items = found.get("Items", [])
        return _page(id, items[0]) if items else None

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

    def _get(
        self, keys: Sequence[dict[str, Any]], attributes: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The items at `keys` (BatchGetItem, 100 keys a call, what it left retried), each with
        its key and `attributes`."""
        out: list[dict[str, Any]] = []
        dynamodb = self._dynamodb()
        # Every name as a placeholder: `until` (like many words) is reserved in expressions.
        names = {f"#{a}": a for a in ("stream", "seq", *attributes)}
        for start in range(0, len(keys), _KEYS):
            left: list[Any] = list(keys[start : start + _KEYS])
            for attempt in range(_ATTEMPTS):
                found: dict[str, Any] = dynamodb.batch_get_item(  # type: ignore[assignment]
                    RequestItems={
                        self.table: {
                            "Keys": left,
                            "ProjectionExpression": ", ".join(names),
                            "ExpressionAttributeNames": names,
                            "ConsistentRead": True,
                        }
                    }
                )
                out += found.get("Responses", {}).get(self.table, [])
                left = (found.get("UnprocessedKeys") or {}).get(self.table, {}).get("Keys", [])
                if not left:
                    break
                time.sleep(0.05 * 2**attempt)
        return out

    def beat(
        self,
        producing: Sequence[str],
        reading: Sequence[str],
        now: float,
        left: Sequence[str] = (),
    ) -> Beat:
        expires = _n(int(now) + self._ttl_s)
        until = _n(now + LEASE_S)
        self._put(
            [{**_key(i, _LEASE), "until": until, TTL_ATTRIBUTE: expires} for i in producing]
            + [{**_key(i, _READERS), "until": until, TTL_ATTRIBUTE: expires} for i in reading]
            + [{**_key(i, _READERS), "until": _n(0), TTL_ATTRIBUTE: expires} for i in left]
        )
        keys = (
            [_key(i) for i in producing]
            + [_key(i, _READERS) for i in producing]
            + [_key(i, _LEASE) for i in reading]
        )
        stopped, lost, read = set(), set(), set()
        leases: dict[str, float | None] = dict.fromkeys(reading)
        for item in self._get(keys, ("stopped", "ended", "until")) if keys else []:
            id, seq = item["stream"]["S"], int(item["seq"]["N"])
            if seq == 0:
                if item.get("stopped", {}).get("BOOL"):
                    stopped.add(id)
                if item.get("ended", {}).get("BOOL"):
                    lost.add(id)
            elif seq == _READERS and float(item["until"]["N"]) > now:
                read.add(id)
            elif seq == _LEASE:
                leases[id] = float(item["until"]["N"])
        return Beat(frozenset(stopped), frozenset(lost), frozenset(read), leases)

    def interrupt(self, id: str, page: Page, record: str | None) -> bool:  # noqa: ARG002
        dynamodb = self._dynamodb()
        try:
            dynamodb.update_item(
                TableName=self.table,
                Key=_key(id),
                UpdateExpression="SET ended = :yes",
                ConditionExpression="attribute_exists(#owner) AND attribute_not_exists(ended)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":yes": {"BOOL": True}},
            )
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return False  # ended already (by another follower), or gone
        expires = _n(int(time.time()) + self._ttl_s)
        dynamodb.put_item(TableName=self.table, Item={**self._page(page), TTL_ATTRIBUTE: expires})
        return True

    def orphans(self, now: float) -> list[tuple[Head, Page | None]]:  # noqa: ARG002
        # Finding them would be a Scan of the whole table; a follower finds its stream's.
        return []

    async def wait(self, id: str, after: int) -> None:  # noqa: ARG002
        await asyncio.sleep(self.poll_s)  # polled: nothing tells of a new page

    def close(self) -> None:
        self._dynamodb.close()


def _head(id: str, found: dict[str, Any]) -> Head:
    chat, record, will = found.get("chat"), found.get("record"), found.get("will")
    return Head(
        id=id,
        owner=found["owner"]["S"],
        chat=chat["S"] if chat else None,
        started_at=float(found["started_at"]["N"]),
        ends_by=float(found["ends_by"]["N"]),
        will=events_of(will["S"]) if will else (),
        record=record["S"] if record else None,
    )


def _page(id: str, item: dict[str, Any]) -> Page:
    return Page(
        id,
        int(item["seq"]["N"]),
        events_of(item["events"]["S"]),
        bool(item.get("end", {}).get("BOOL")),
        events_of(item["will"]["S"]) if "will" in item else (),
        int(item["chars"]["N"]) if "chars" in item else 0,
    )
