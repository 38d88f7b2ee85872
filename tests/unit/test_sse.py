"""SSE framing against httpx-sse, a WHATWG-conformant parser, byte for byte."""

from __future__ import annotations

import itertools
import re

import httpx
import pytest
from httpx_sse import EventSource
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfn.dialects import Event
from streamfn.sse import encode


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
