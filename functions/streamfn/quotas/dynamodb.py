"""Limits counted in a DynamoDB table that every process and Lambda environment shares
(`STREAMFN_LIMITS_TABLE`, keyed by `pk`, TTL on `ttl`).

One request's admission is one `TransactWriteItems` call whose conditional updates either all
apply or none does (the botocore reference, TransactionCanceledException: "A condition in one
of the condition expressions is not met" cancels the whole transaction, and
`CancellationReasons` says which):

- `rpm#<identity>#<minute>`: `ADD n 1` if `n < rpm`; the item expires after its minute.
- `streams#<identity>`: `SET leases.<lease id> = <expiry>` if `size(leases) < streams`. A lease
  is a map entry rather than a counter so that an environment killed mid-stream (Lambda ends
  invocations at their timeout, and a process can crash) cannot hold a slot for ever: an entry
  past its expiry (the longest stream plus a minute) is swept when it would refuse a request.
- `tokens#<identity>#<day>`: `ADD n reserve` if `n <= tokens_per_day - reserve`; the end of the
  request adds `used - reserve` to the same day's item.
- `budget#<identity>#<period>` (the UTC day or month, `streamfn.quotas.period`): `ADD n
  reserve` (nano-dollars) if `n < budget`; the end of the request adds `spent - reserve` to the
  same period's item, which expires a day after its period.

Conditions are evaluated by DynamoDB on the item as it is, so two environments racing for the
last slot cannot both get it; a transaction conflicting with another is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamfn.quotas import Exceeded, Lease, Quota, Unavailable, nanos, period

if TYPE_CHECKING:
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

logger = logging.getLogger("streamfn.quotas")

_CONFLICT_TRIES = 4


def _n(value: float) -> dict[str, str]:
    return {"N": str(int(value))}


@dataclass
class _DynamoDBLease:
    quotas: DynamoDBQuotas
    identity: str
    lease_id: str | None  # set when concurrent streams are limited
    tokens_pk: str | None  # set when tokens per day are limited
    reserved: int
    budget_pk: str | None = None  # set when the identity has a budget
    reserved_nanos: int = 0

    async def release(self, used_tokens: int, spent_usd: float | None = None) -> None:
        items: list[TransactWriteItemTypeDef] = []
        if self.lease_id is not None:
            items.append(
                self.quotas.update(
                    f"streams#{self.identity}",
                    "REMOVE leases.#lease",
                    names={"#lease": self.lease_id},
                )
            )
        if self.tokens_pk is not None and used_tokens != self.reserved:
            items.append(
                self.quotas.update(
                    self.tokens_pk,
                    "ADD n :delta",
                    values={":delta": _n(used_tokens - self.reserved)},
                )
            )
        spent = nanos(spent_usd) - self.reserved_nanos
        if self.budget_pk is not None and spent:
            items.append(
                self.quotas.update(self.budget_pk, "ADD n :delta", values={":delta": _n(spent)})
            )
        if items:
            await self.quotas.transact(items)


class DynamoDBQuotas:
    def __init__(self, table: str, *, lease_s: float, endpoint_url: str | None = None) -> None:
        import boto3  # imported on use: the SDK is heavy and only AWS needs it

        self._client: DynamoDBClient = boto3.client("dynamodb", endpoint_url=endpoint_url)
        self._table = table
        self._lease_s = lease_s
        self._streams_items: set[str] = set()  # identities whose streams item exists

    def update(
        self,
        pk: str,
        expression: str,
        *,
        condition: str | None = None,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> TransactWriteItemTypeDef:
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": expression,
        }
        if condition is not None:
            update["ConditionExpression"] = condition
            update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if names:
            update["ExpressionAttributeNames"] = names
        if values:
            update["ExpressionAttributeValues"] = values
        item: TransactWriteItemTypeDef = {"Update": update}  # type: ignore[typeddict-item]
        return item

    async def transact(self, items: list[TransactWriteItemTypeDef]) -> list[dict[str, Any]]:
        """Apply `items` at once. Returns [] when applied, else the cancellation reasons (one
        per item: `{"Code": "None"}` for the items that were not the cause)."""
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(_CONFLICT_TRIES):
            try:
                await asyncio.to_thread(self._client.transact_write_items, TransactItems=items)
                return []
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise Unavailable(str(exc.response["Error"]["Code"])) from exc
                reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
                codes = {r.get("Code") for r in reasons}
                if "ConditionalCheckFailed" in codes:
                    return reasons
                if codes <= {"None", "TransactionConflict"} and attempt + 1 < _CONFLICT_TRIES:
                    await asyncio.sleep(random.uniform(0.01, 0.05) * 2**attempt)
                    continue
                raise Unavailable(f"transaction cancelled: {sorted(map(str, codes))}") from exc
            except BotoCoreError as exc:  # cannot connect, timed out, no credentials
                raise Unavailable(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    async def _ensure_streams_item(self, identity: str) -> None:
        """`SET leases.x` needs the map to exist: create it once (it never expires)."""
        if identity in self._streams_items:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await asyncio.to_thread(
                self._client.put_item,
                TableName=self._table,
                Item={"pk": {"S": f"streams#{identity}"}, "leases": {"M": {}}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise Unavailable(str(exc.response["Error"]["Code"])) from exc
        except BotoCoreError as exc:
            raise Unavailable(type(exc).__name__) from exc
        self._streams_items.add(identity)

    async def _sweep(self, identity: str, now: float) -> bool:
        """Remove the leases past their expiry (their holders died); whether any was."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            item = await asyncio.to_thread(
                self._client.get_item,
                TableName=self._table,
                Key={"pk": {"S": f"streams#{identity}"}},
                ConsistentRead=True,
            )
            leases = item.get("Item", {}).get("leases", {}).get("M", {})
            expired = [k for k, v in leases.items() if float(v.get("N", "0")) < now]
            if not expired:
                return False
            names = {f"#l{i}": lease for i, lease in enumerate(expired)}
            await asyncio.to_thread(
                self._client.update_item,
                TableName=self._table,
                Key={"pk": {"S": f"streams#{identity}"}},
                UpdateExpression="REMOVE " + ", ".join(f"leases.{n}" for n in names),
                ExpressionAttributeNames=names,
            )
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(type(exc).__name__) from exc
        logger.warning("swept %d expired stream leases of %s", len(expired), identity)
        return True

    async def acquire(
        self, identity: str, quota: Quota, reserve_tokens: int, reserve_usd: float | None = None
    ) -> Lease:
        rpm, streams, daily = (
            quota.requests_per_minute,
            quota.concurrent_streams,
            quota.tokens_per_day,
        )
        budget = None if quota.budget_usd is None else nanos(quota.budget_usd)
        reserve_nanos = nanos(reserve_usd) if budget is not None else 0
        for sweep in (True, False):
            now = time.time()
            minute, day = int(now // 60), int(now // 86400)
            lease_id = secrets.token_hex(8) if streams is not None else None
            tokens_pk = f"tokens#{identity}#{day}" if daily is not None else None
            spending, left_s = period(quota.budget_period, now)
            budget_pk = f"budget#{identity}#{spending}" if budget is not None else None
            items: list[TransactWriteItemTypeDef] = []
            kinds: list[str] = []  # which limit each item checks
            if rpm is not None:
                items.append(
                    self.update(
                        f"rpm#{identity}#{minute}",
                        "ADD n :one SET #ttl = :ttl",
                        condition="attribute_not_exists(n) OR n < :max",
                        names={"#ttl": "ttl"},
                        values={":one": _n(1), ":max": _n(rpm), ":ttl": _n(now + 120)},
                    )
                )
                kinds.append("requests")
            if streams is not None and lease_id is not None:
                await self._ensure_streams_item(identity)
                items.append(
                    self.update(
                        f"streams#{identity}",
                        "SET leases.#lease = :expires",
                        condition="size(leases) < :max",
                        names={"#lease": lease_id},
                        values={":expires": _n(now + self._lease_s), ":max": _n(streams)},
                    )
                )
                kinds.append("streams")
            if daily is not None and tokens_pk is not None:
                room = daily - reserve_tokens
                if room < 0:
                    raise Exceeded.tokens(identity, daily, reserve_tokens, None, now)
                items.append(
                    self.update(
                        tokens_pk,
                        "ADD n :reserve SET #ttl = :ttl",
                        condition="attribute_not_exists(n) OR n <= :room",
                        names={"#ttl": "ttl"},
                        values={
                            ":reserve": _n(reserve_tokens),
                            ":room": _n(room),
                            ":ttl": _n((day + 2) * 86400),
                        },
                    )
                )
                kinds.append("tokens")
            if budget is not None and budget_pk is not None:
                items.append(
                    self.update(
                        budget_pk,
                        "ADD n :reserve SET #ttl = :ttl",
                        condition="attribute_not_exists(n) OR n < :max",
                        names={"#ttl": "ttl"},
                        values={
                            ":reserve": _n(reserve_nanos),
                            ":max": _n(budget),
                            ":ttl": _n(now + left_s + 86400),
                        },
                    )
                )
                kinds.append("budget")
            if not items:
                break
            reasons = await self.transact(items)
            if not reasons:
                return _DynamoDBLease(
                    self, identity, lease_id, tokens_pk, reserve_tokens, budget_pk, reserve_nanos
                )
            failed = next(
                i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"
            )
            if kinds[failed] == "requests" and rpm is not None:
                raise Exceeded.requests(identity, rpm, now)
            if kinds[failed] == "streams" and streams is not None:
                if sweep and await self._sweep(identity, now):
                    continue
                raise Exceeded.streams(identity, streams)
            used = reasons[failed].get("Item", {}).get("n", {}).get("N")
            if kinds[failed] == "budget":
                raise Exceeded.budget(identity, quota, int(used) if used else None, now)
            raise Exceeded.tokens(
                identity, daily or 0, reserve_tokens, int(used) if used else None, now
            )
        return _DynamoDBLease(self, identity, None, None, reserve_tokens)
