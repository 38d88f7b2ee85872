"""The stream log in the Redis a fleet of servers shares (`STREAMFN_REDIS_URL`): a stream started
on one server is resumed on any other, and followed there live.

Per stream, under its id's hash tag (so that a Cluster keeps them in one slot):
- `streamfn:{<id>}:head`, a hash: the head's fields, and its ownership (`lease_until`,
  `read_until`, `stopped`, `ended`), as the SQLite log keeps them in its `streams` row;
- `streamfn:{<id>}:pages`, a Redis Stream of pages, each entry's id `<last>-0`, where `last` is
  the number of the page's last event: `XRANGE` from `<after + 1>-0` is then exactly the pages
  holding events past `after` (https://redis.io/docs/latest/develop/data-types/streams/). A
  page rewritten with its end (the journal does that when nothing came after it), and the end a
  follower writes for a dead producer, take `<last>-1`, which sorts after it.
Both expire with the retention (`STREAMFN_RESUME_TTL_S`). Beside them, `streamfn:chat:<hash>`
names an AI SDK chat's latest stream, and the sorted set `streamfn:open` holds the streams yet to
end, scored by their producer's lease, for the sweep that ends those whose producer died.

The writes that must not race (a head written once; a page not written over an end another
process wrote; an end written once) are Lua scripts, which Redis runs atomically. Its methods
block (redis-py's client), as `StreamLog` says; followers wait for news with `wait`, on one
`XREAD BLOCK` per process for every stream followed here, rather than a poll or a connection
per follower.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streamfn.redis_connection import blocking_client, client, hash_tag, where
from streamfn.resume import LEASE_S, Beat, Head, Page
from streamfn.resume.sqlite import events_json, events_of

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

_OPEN = "streamfn:open"
# How long one XREAD blocks: a stream that starts being followed meanwhile waits for the next.
_BLOCK_MS = 200
_HEAD_FIELDS = ("owner", "chat", "started_at", "ends_by", "will", "record")

# KEYS: head. ARGV: ttl, then field, value pairs. Written once (a retry changes nothing).
_PUT_HEAD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: head, pages. ARGV: last, events, end (0/1), will, chars, ttl.
# Not over an end another process wrote (it took this producer for dead).
_PUT_PAGE = """
if redis.call('HGET', KEYS[1], 'ended') == '1' then return 0 end
local fields = {'events', ARGV[2], 'end', ARGV[3], 'will', ARGV[4], 'chars', ARGV[5]}
local added = redis.pcall('XADD', KEYS[2], ARGV[1] .. '-0', unpack(fields))
if type(added) == 'table' and added.err and ARGV[3] == '1' then
  added = redis.pcall('XADD', KEYS[2], ARGV[1] .. '-1', unpack(fields))
end
if type(added) == 'table' and added.err then return 0 end
redis.call('HINCRBY', KEYS[1], 'bytes', string.len(ARGV[2]))
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'ended', '1') end
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""

# KEYS: head, pages. ARGV: last, events, chars, ttl. The end of a stream whose producer died,
# unless it has ended, or has pages past `last` (its caller had not read them).
_INTERRUPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'ended') == '1' then return 0 end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] and tonumber(string.match(top[1][1], '^(%d+)')) > tonumber(ARGV[1]) then
  return 0  -- pages came after the caller's last: it reads on before it ends the stream
end
redis.call('HSET', KEYS[1], 'ended', '1')
redis.call('XADD', KEYS[2], ARGV[1] .. '-1', 'events', ARGV[2], 'end', '1', 'will', '[]',
  'chars', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: head. ARGV: field, value. Only on a stream that exists (HSET would make one).
_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _keys(id: str) -> list[str]:
    tag = hash_tag(id)
    return [f"streamfn:{tag}:head", f"streamfn:{tag}:pages"]


def _chat_key(owner: str, chat: str) -> str:
    return "streamfn:chat:" + hashlib.sha256(f"{owner}\0{chat}".encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _head(id: str, fields: dict[Any, Any]) -> Head | None:
    got = {_text(k): _text(v) for k, v in fields.items()}
    if "owner" not in got:
        return None
    return Head(
        id=id,
        owner=got["owner"],
        chat=got.get("chat") or None,
        started_at=float(got["started_at"]),
        ends_by=float(got["ends_by"]),
        will=events_of(got.get("will", "[]")),
        record=got.get("record") or None,
    )


def _page(id: str, entry: Any) -> Page:
    entry_id, raw = entry
    fields = {_text(k): _text(v) for k, v in raw.items()}
    last = int(_text(entry_id).split("-")[0])
    return Page(
        id,
        last,
        events_of(fields["events"]),
        fields["end"] == "1",
        events_of(fields.get("will", "[]")),
        int(fields.get("chars", "0")),
    )


class RedisStreamLog:
    poll_s = 1.0  # followers are woken by `wait`; this is only its longest wait
    beat_s = 0.5

    def __init__(self, url: str, *, ttl_s: float) -> None:
        self._url = url
        self._where = where(url)
        self._ttl = max(1, int(ttl_s))
        self._redis: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._waker: _Waker | None = None

    def _client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = blocking_client(self._url)
            for name, source in (
                ("head", _PUT_HEAD),
                ("page", _PUT_PAGE),
                ("interrupt", _INTERRUPT),
                ("mark", _MARK),
            ):
                self._scripts[name] = self._redis.register_script(source)
        return self._redis

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        self._client()
        return self._scripts[name](keys=keys, args=args)

    def prepare(self) -> None:
        self._client().ping()
        logger.info("streams are logged in Redis at %s", self._where)

    def write(self, heads: Sequence[Head], pages: Sequence[Page]) -> None:
        lease = time.time() + LEASE_S
        for h in heads:
            fields: list[Any] = [
                "owner",
                h.owner,
                "chat",
                h.chat or "",
                "started_at",
                repr(h.started_at),
                "ends_by",
                repr(h.ends_by),
                "will",
                events_json(h.will),
                "record",
                h.record or "",
                "lease_until",
                repr(lease),
            ]
            self._script("head", _keys(h.id)[:1], [self._ttl, *fields])
            self._client().zadd(_OPEN, {h.id: lease})
            if h.chat is not None:
                self._client().set(_chat_key(h.owner, h.chat), h.id, ex=self._ttl)
        for p in pages:
            args = [p.last, events_json(p.events), int(p.end), events_json(p.will), p.chars]
            self._script("page", _keys(p.stream), [*args, self._ttl])
            if p.end:
                self._client().zrem(_OPEN, p.stream)

    def head(self, id: str) -> Head | None:
        return _head(id, self._client().hgetall(_keys(id)[0]))

    def pages(self, id: str, after: int, limit: int | None = None) -> list[Page]:
        entries = self._client().xrange(_keys(id)[1], f"{after + 1}-0", "+", count=limit)
        return [_page(id, entry) for entry in entries or ()]

    def last_page(self, id: str) -> Page | None:
        entries = self._client().xrevrange(_keys(id)[1], "+", "-", count=1)
        return _page(id, entries[0]) if entries else None

    def latest(self, owner: str, chat: str) -> str | None:
        found = self._client().get(_chat_key(owner, chat))
        return None if found is None else _text(found)

    def stop(self, id: str) -> None:
        self._script("mark", _keys(id)[:1], ["stopped", "1"])

    def beat(
        self,
        producing: Sequence[str],
        reading: Sequence[str],
        now: float,
        left: Sequence[str] = (),
    ) -> Beat:
        until = repr(now + LEASE_S)
        redis = self._client()
        pipe = redis.pipeline(transaction=False)
        for id in left:
            self._scripts["mark"](keys=_keys(id)[:1], args=["read_until", "0"], client=pipe)
        for id in producing:
            self._scripts["mark"](keys=_keys(id)[:1], args=["lease_until", until], client=pipe)
            pipe.hmget(_keys(id)[0], "stopped", "ended", "read_until")
        if producing:
            pipe.zadd(_OPEN, dict.fromkeys(producing, now + LEASE_S), xx=True)
        for id in reading:
            self._scripts["mark"](keys=_keys(id)[:1], args=["read_until", until], client=pipe)
            pipe.hget(_keys(id)[0], "lease_until")
        results = pipe.execute()[len(left) :]
        stopped, lost, read = set(), set(), set()
        for i, id in enumerate(producing):
            was_stopped, ended, read_until = results[2 * i + 1]
            if was_stopped is not None and _text(was_stopped) == "1":
                stopped.add(id)
            if ended is not None and _text(ended) == "1":
                lost.add(id)
            if read_until is not None and float(_text(read_until)) > now:
                read.add(id)
        rest = results[2 * len(producing) + (1 if producing else 0) :]
        leases: dict[str, float | None] = {}
        for i, id in enumerate(reading):
            lease = rest[2 * i + 1]
            leases[id] = None if lease is None else float(_text(lease))
        return Beat(frozenset(stopped), frozenset(lost), frozenset(read), leases)

    def interrupt(self, id: str, page: Page, record: str | None) -> bool:  # noqa: ARG002
        ended = self._script(
            "interrupt",
            _keys(id),
            [page.last, events_json(page.events), page.chars, self._ttl],
        )
        self._client().zrem(_OPEN, id)
        return bool(ended)

    def orphans(self, now: float) -> list[tuple[Head, Page | None]]:
        found: list[tuple[Head, Page | None]] = []
        for raw in self._client().zrangebyscore(_OPEN, "-inf", now):
            id = _text(raw)
            head = self.head(id)
            last = self.last_page(id)
            if head is None or (last is not None and last.end):
                self._client().zrem(_OPEN, id)  # gone with its retention, or ended after all
                continue
            found.append((head, last))
        return found

    async def wait(self, id: str, after: int) -> None:
        """Until stream `id` may have pages past `after`, or `poll_s` has passed."""
        if self._waker is None:
            self._waker = _Waker(self._url)
        await self._waker.wait(_keys(id)[1], f"{after}-0", self.poll_s)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None


class _Waker:
    """One `XREAD BLOCK` at a time for every stream that followers here wait on: each entry
    wakes that stream's followers, who then read the pages themselves."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._waiting: dict[str, tuple[str, list[asyncio.Future[None]]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def wait(self, key: str, after: str, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        since, futures = self._waiting.get(key, (after, []))
        self._waiting[key] = (min(since, after, key=_order), [*futures, future])
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._read())
        try:
            async with asyncio.timeout(timeout_s):
                await future
        except TimeoutError:
            pass
        finally:
            if key in self._waiting:
                since, futures = self._waiting[key]
                left = [f for f in futures if f is not future]
                if left:
                    self._waiting[key] = (since, left)
                else:
                    del self._waiting[key]

    async def _read(self) -> None:
        from redis.exceptions import RedisError

        while self._waiting:
            streams: dict[Any, Any] = {key: since for key, (since, _) in self._waiting.items()}
            try:
                answer = await client(self._url).xread(streams, count=1, block=_BLOCK_MS)
            except (RedisError, OSError) as exc:
                # Followers fall back on waiting out `poll_s`; say so once in a while.
                logger.warning("cannot wait for stream pages in Redis: %s", type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for raw_key, _entries in _streams_of(answer):
                key = _text(raw_key)
                _, futures = self._waiting.pop(key, ("", []))
                for future in futures:
                    if not future.done():
                        future.set_result(None)


def _streams_of(answer: Any) -> list[tuple[Any, Any]]:
    """XREAD's streams and entries, from a RESP3 map or a RESP2 list alike."""
    if not answer:
        return []
    if isinstance(answer, dict):
        return list(answer.items())
    return [(item[0], item[1]) for item in answer]


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
