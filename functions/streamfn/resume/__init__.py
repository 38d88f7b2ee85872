"""Resumable streams: every stream's events go to a durable log, so that a client that lost its
connection can come back (`GET /chat/stream/{id}`, EventSource's own reconnect, the AI SDK's
`resume`) and get what it missed, then the rest live.

- `live`: the producer that runs a stream apart from any one connection (it outlives its
  client for a grace period), the process's registry of them, and the journal that writes
  their events to the log in batches.
- The log, behind `StreamLog`: SQLite locally (`sqlite`), DynamoDB in AWS (`dynamodb`), where a
  resume request is another invocation that reads what the producing one wrote.

A stream's events are numbered from 1; each is framed with the SSE id `<stream id>:<n>`, so
that the `Last-Event-ID` an EventSource sends back names both the stream and the place in it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from streamfn.dialects import Event
from streamfn.settings import Settings, in_lambda

logger = logging.getLogger(__name__)

# A stream id as clients may choose it (`stream_id`): URL- and SSE-id-safe, no `:`.
STREAM_ID = r"^[A-Za-z0-9_-]{8,128}$"
_STREAM_ID = re.compile(STREAM_ID)


@dataclass(frozen=True, slots=True)
class Head:
    """What is known of a stream from its start: who may resume it, the AI SDK chat it
    answers (if any), and when it must have ended (a follower stops waiting after that)."""

    id: str
    owner: str
    chat: str | None
    started_at: float
    ends_by: float


@dataclass(frozen=True, slots=True)
class Page:
    """A run of a stream's events, the last of them numbered `last`; `end` on the final one."""

    stream: str
    last: int
    events: tuple[Event, ...]
    end: bool = False

    def after(self, seq: int) -> list[tuple[int, Event]]:
        """This page's events numbered above `seq`, with their numbers."""
        first = self.last - len(self.events) + 1
        return [(first + i, e) for i, e in enumerate(self.events) if first + i > seq]


class StreamLog(Protocol):
    """The durable log. Its methods block (sqlite3, boto3): callers run them in a worker
    thread."""

    poll_s: float  # how often a follower in another process looks for new pages

    def prepare(self) -> None:
        """Open what the first write needs (the file, the client), so that no stream pays for
        it: done at start-up, in a worker thread."""
        ...

    def write(self, heads: Sequence[Head], pages: Sequence[Page]) -> None:
        """Store `heads` (new streams; a head with a chat becomes that chat's latest stream)
        and `pages`, all or, on failure, some: a retry rewrites the same keys."""
        ...

    def head(self, id: str) -> Head | None: ...

    def pages(self, id: str, after: int) -> list[Page]:
        """The pages holding events numbered above `after`, in order."""
        ...

    def latest(self, owner: str, chat: str) -> str | None:
        """The id of the last stream `owner` started for `chat`."""
        ...

    def stop(self, id: str) -> None:
        """Ask the stream's producer, wherever it runs, to end it."""
        ...

    def stopped(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` have been asked to stop."""
        ...

    def close(self) -> None: ...


def valid_id(id: str) -> bool:
    return bool(_STREAM_ID.match(id))


def position(last_event_id: str | None, after: str | None = None) -> tuple[str | None, int]:
    """The stream and event number a reconnecting client names: `Last-Event-ID` as streamfn
    frames ids (`<stream>:<n>`), or a bare number (`?after=N`, or an id without its stream);
    (None, 0) when it names neither."""
    value = last_event_id if last_event_id is not None else after
    if not value:
        return None, 0
    stream, colon, number = value.rpartition(":")
    if not number.isdigit():
        return None, 0
    return (stream if colon and valid_id(stream) else None), int(number)


def open_log(settings: Settings) -> StreamLog | None:
    """The log `settings` ask for: the DynamoDB table if named, else the SQLite file; none when
    resume is off, or in Lambda without a table (its files vanish with the environment)."""
    if not settings.resume:
        return None
    if settings.streams_table:
        from streamfn.resume.dynamodb import DynamoDBStreamLog

        return DynamoDBStreamLog(settings.streams_table, ttl_s=settings.resume_ttl_s)
    if in_lambda():
        logger.warning("STREAMFN_STREAMS_TABLE is not set: streams cannot be resumed")
        return None
    from streamfn.resume.sqlite import SqliteStreamLog

    return SqliteStreamLog(settings.streams_db, ttl_s=settings.resume_ttl_s)
