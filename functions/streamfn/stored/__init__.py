"""Stored responses: what `POST /v1/responses` keeps when asked to (`store: true`), so that
`GET /v1/responses/{id}` returns it, `DELETE` removes it, and a later request naming it
(`previous_response_id`, an `item_reference` to one of its output items) can go on from it.

They live beside the stream log, in the same backends, chosen the same way: the DynamoDB table
(`dynamodb`, under keys of their own), else the fleet's Redis (`redis`), else the SQLite file
(`sqlite`, a table of its own); none in Lambda without a table.

A stored response belongs to the identity that made it: another's `get` finds nothing and its
`delete` deletes nothing, exactly as for a response that never was (the route answers 404 in
every case, so that an id tells nobody else that it exists). Each expires after the retention
it was put with; every backend checks the expiry itself on reading, whatever it deletes later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from streamfn.errors import StoreUnavailable
from streamfn.settings import Settings, in_lambda

logger = logging.getLogger(__name__)


class StoredUnavailable(StoreUnavailable):
    """The store of responses cannot be reached just now: what needs it is refused (503)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored response: its id (`resp_...`), the identity that made it, when, and `body`,
    one JSON document (the Response object and the input items it was made from), which the
    store keeps as it is given."""

    id: str
    owner: str
    created_at: float
    body: str


class ResponseStore(Protocol):
    """Where stored responses are kept. Every method may raise `StoredUnavailable`."""

    async def put(self, stored: Stored, *, ttl_s: float) -> None:
        """Keep `stored` for `ttl_s` seconds (at most the store's own retention), replacing
        whatever was kept under its id."""
        ...

    async def get(self, id: str, owner: str) -> Stored | None:
        """The response `id`, if it is kept, has not expired, and is `owner`'s."""
        ...

    async def delete(self, id: str, owner: str) -> bool:
        """Delete the response `id` if it is kept, has not expired, and is `owner`'s; whether
        it was (otherwise nothing is deleted)."""
        ...

    async def prepare(self) -> None:
        """Open what the first request needs (the file and its table, the client), at start-up."""
        ...

    async def aclose(self) -> None: ...


def open_responses(settings: Settings, *, ttl_s: float) -> ResponseStore | None:
    """The store `settings` ask for, beside the stream log: the DynamoDB table if named, else
    the fleet's Redis, else the SQLite file of the stream log; none in Lambda without a table
    (its files vanish with the environment). `ttl_s` is the longest a response is kept."""
    if settings.streams_table:
        from streamfn.stored.dynamodb import DynamoDBResponses

        return DynamoDBResponses(settings.streams_table, ttl_s=ttl_s)
    if settings.redis_url:
        from streamfn.stored.redis import RedisResponses

        return RedisResponses(settings.redis_url.get_secret_value(), ttl_s=ttl_s)
    if in_lambda():
        logger.warning("STREAMFN_STREAMS_TABLE is not set: responses cannot be stored")
        return None
    from streamfn.stored.sqlite import SqliteResponses

    return SqliteResponses(settings.streams_db, ttl_s=ttl_s)
