"""SSE framing against httpx-sse, a WHATWG-conformant parser, byte for byte."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfn.dialects import Event
from streamfn.sse import EventStream, encode


def parse(payload: bytes, cuts: list[int]) -> list[tuple[str, str, str, int | None]]:
    """Parse `payload` delivered in pieces split at `cuts` (byte offsets, UTF-8 split too)."""
    bounds = [0, *sorted({c % (len(payload) + 1) for c in cuts}), len(payload)]
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(pieces)
    )
    return [(e.event, e.data, e.id, e.retry) for e in EventSource(response).iter_sse()]


def as_received(text: str) -> str:
    """What SSE can deliver of `text`: CR and CRLF as LF, a lone surrogate (not UTF-8) as U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", re.sub(r"\r\n?", "\n", text))


# Non-empty text: an event whose data is empty is never dispatched (WHATWG), and streamfn never
# emits an empty token.
texts = st.text(min_size=1)
texts_without_cr = st.text(
    alphabet=st.characters(exclude_characters="\r", exclude_categories=["Cs"]), min_size=1
)


@settings(max_examples=300)
@given(texts_without_cr, st.lists(st.integers(min_value=0), max_size=6))
def test_text_without_cr_round_trips_exactly(text: str, cuts: list[int]) -> None:
    payload = encode(Event("token", text), id=7)
    assert parse(payload, cuts) == [("token", text, "7", None)]


@settings(max_examples=300)
@given(st.lists(texts, min_size=1, max_size=5), st.lists(st.integers(min_value=0), max_size=8))
def test_any_text_round_trips_as_sse_can_carry_it(tokens: list[str], cuts: list[int]) -> None:
    """SSE data cannot hold CR: CR and CRLF arrive as LF. Nothing else changes."""
    payload = b"".join(
        encode(Event("token", t), id=i, retry_ms=3000 if i == 1 else None)
        for i, t in enumerate(tokens, 1)
    )
    parsed = parse(payload, cuts)
    assert [d for _, d, _, _ in parsed] == [as_received(t) for t in tokens]
    assert [i for _, _, i, _ in parsed] == [str(i) for i in range(1, len(tokens) + 1)]
    assert [r for _, _, _, r in parsed] == [3000] + [None] * (len(tokens) - 1)


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("plain", b"id: 1\nevent: token\ndata: plain\n\n"),
        (" lead", b"id: 1\nevent: token\ndata:  lead\n\n"),
        (":colon", b"id: 1\nevent: token\ndata: :colon\n\n"),
        ("a\nb\n", b"id: 1\nevent: token\ndata: a\ndata: b\ndata: \n\n"),
        (
            "\u00e9\u2028\U0001f600",
            "id: 1\nevent: token\ndata: \u00e9\u2028\U0001f600\n\n".encode(),
        ),
    ],
)
def test_wire_format(text: str, wire: bytes) -> None:
    assert encode(Event("token", text), id=1) == wire
    assert parse(wire, [])[0][1] == text


def test_lone_surrogate_becomes_replacement_character_instead_of_failing() -> None:
    wire = encode(Event("token", "half \ud83d"), id=1)
    assert wire == "id: 1\nevent: token\ndata: half \ufffd\n\n".encode()


# EventStream, driven as an ASGI server drives it: `send` records what is written, `receive`
# says when the client leaves.


class Client:
    """An ASGI server's side of one response: what was sent, and a client that can leave or
    stop taking bytes."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.gone = asyncio.Event()
        self.stalled = False

    async def receive(self) -> dict[str, object]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, object]) -> None:
        if self.stalled and message.get("more_body"):
            await asyncio.Event().wait()  # a full socket: this write never completes
        self.sent.append(message)

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body" and m["body"]]  # type: ignore[misc]


class Runs:
    """A follower's runs, fed by the test; `closed` once the response has closed it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[list[tuple[int, Event]] | None] = asyncio.Queue()
        self.closed = False

    async def runs(self) -> AsyncGenerator[list[tuple[int, Event]], None]:
        try:
            while (run := await self.queue.get()) is not None:
                yield run
        finally:
            self.closed = True


def _response(runs: Runs, **options: Any) -> EventStream:
    return EventStream(runs.runs(), stream="s", retry_ms=3000, **{"keepalive_s": 60, **options})


async def test_the_events_ready_together_go_out_in_one_write_the_first_with_retry() -> None:
    runs, client = Runs(), Client()
    response = _response(runs)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    runs.queue.put_nowait([(1, Event("token", "a"))])
    runs.queue.put_nowait([(2, Event("token", "b")), (3, Event("token", "c"))])
    runs.queue.put_nowait(None)
    await asyncio.wait_for(task, 5)
    assert client.sent[0]["type"] == "http.response.start"
    assert dict(client.sent[0]["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"  # type: ignore[call-overload]
    assert client.bodies == [
        b"id: s:1\nevent: token\ndata: a\nretry: 3000\n\n",
        b"id: s:2\nevent: token\ndata: b\n\nid: s:3\nevent: token\ndata: c\n\n",
    ]
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert runs.closed


async def test_a_keepalive_goes_out_only_after_a_silence_of_keepalive_s() -> None:
    runs, client = Runs(), Client()
    response = _response(runs, keepalive_s=0.2, keepalive=Event("ping", '{"type": "ping"}'))
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    for i in range(1, 8):  # an event every 0.1 s: never 0.2 s of silence
        runs.queue.put_nowait([(i, Event("token", str(i)))])
        await asyncio.sleep(0.1)
    assert not any(b"ping" in body for body in client.bodies)
    await asyncio.sleep(0.5)  # silence: a ping every 0.2 s
    pings = [body for body in client.bodies if body == b'event: ping\ndata: {"type": "ping"}\n\n']
    assert 2 <= len(pings) <= 3, client.bodies
    runs.queue.put_nowait(None)
    await asyncio.wait_for(task, 5)


async def test_a_client_that_leaves_ends_the_response_while_it_waits_for_events() -> None:
    runs, client = Runs(), Client()
    task = asyncio.create_task(_response(runs)({"type": "http"}, client.receive, client.send))
    runs.queue.put_nowait([(1, Event("token", "a"))])
    await asyncio.sleep(0.05)
    client.gone.set()
    await asyncio.wait_for(task, 5)  # ended, not failed: a departure
    assert runs.closed
    assert len(client.bodies) == 1


async def test_a_client_that_takes_nothing_is_left_after_the_write_timeout() -> None:
    runs, client = Runs(), Client()
    response = _response(runs, write_timeout_s=0.2)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    client.stalled = True
    runs.queue.put_nowait([(1, Event("token", "a"))])
    started = time.monotonic()
    await asyncio.wait_for(task, 5)
    assert 0.15 < time.monotonic() - started < 2
    assert runs.closed


async def test_a_keepalive_that_is_never_taken_ends_the_response_too() -> None:
    runs, client = Runs(), Client()
    response = _response(runs, keepalive_s=0.1, write_timeout_s=0.2)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    client.stalled = True  # and no event comes: only keepalives are written
    await asyncio.wait_for(task, 5)
    assert runs.closed


async def test_a_server_stopping_the_response_is_not_taken_for_a_departure() -> None:
    runs, client = Runs(), Client()
    task = asyncio.create_task(_response(runs)({"type": "http"}, client.receive, client.send))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs.closed
