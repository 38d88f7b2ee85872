"""AWS's event stream framing: the fake's encoder against botocore's decoder and a third party's
published vectors, and streamfn's reader against botocore's decoder, split anywhere."""

from __future__ import annotations

import itertools
import json
import struct
import zlib
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer, ParserError
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfn.providers.eventstream import EventStreamError, EventStreamReader, parse_headers
from tests.fakes import bedrock as fake


def botocore_messages(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, m.payload) for m in buffer]


def test_the_encoder_matches_published_vectors() -> None:
    """The Elixir event_stream package's documented examples (hex.pm/packages/event_stream),
    an encoder written from the same specification by someone else."""
    assert fake.frame({}, b'{"foo": "bar"}') == (
        bytes([0, 0, 0, 30, 0, 0, 0, 0, 186, 242, 246, 138])
        + b'{"foo": "bar"}'
        + bytes([174, 114, 88, 228])
    )
    assert fake.frame({"content-type": "application/json"}, b'{"foo": "bar"}') == (
        bytes([0, 0, 0, 62, 0, 0, 0, 32, 64, 93, 249, 70, 12])
        + b"content-type"
        + bytes([7, 0, 16])
        + b"application/json"
        + b'{"foo": "bar"}'
        + bytes([111, 162, 191, 59])
    )


TRANSCRIPTS = {
    "text": fake.text_stream(["Hel", "lo ", "wörld ✓"]),
    "thinking and two tools": fake.THINKING_TWO_TOOLS,
    "answer": fake.ANSWER,
    "fast": fake.fast_stream(50),
    "exception": [fake.message_start(), fake.exception("throttlingException", "Too many")],
}


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_botocore_decodes_every_frame_the_fake_sends(name: str) -> None:
    data = b"".join(TRANSCRIPTS[name])
    messages = botocore_messages(data)
    assert messages
    for headers, payload in messages:
        assert headers[":content-type"] == "application/json"
        assert headers[":message-type"] in ("event", "exception")
        body = json.loads(payload)
        if headers[":message-type"] == "event":
            assert headers[":event-type"] in {
                "messageStart",
                "contentBlockStart",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata",
            }
            assert body["p"].startswith("abcde")  # Bedrock's padding
        else:
            assert headers[":exception-type"] == "throttlingException"
            assert body == {"message": "Too many"}
    # Bedrock's quirks, as the fake speaks them: no contentBlockStart for text or reasoning.
    starts = [json.loads(p) for h, p in messages if h.get(":event-type") == "contentBlockStart"]
    assert all("toolUse" in s["start"] for s in starts)


def _typed_header(name: str, kind: int, value: bytes) -> bytes:
    return struct.pack("!B", len(name)) + name.encode() + bytes([kind]) + value


def _frame(block: bytes, payload: bytes) -> bytes:
    prelude = struct.pack("!II", 16 + len(block) + len(payload), len(block))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + block + payload
    return message + struct.pack("!I", zlib.crc32(message))


# A message with a header of every type the specification defines.
EVERY_TYPE = _frame(
    b"".join(
        [
            _typed_header("t", 0, b""),
            _typed_header("f", 1, b""),
            _typed_header("byte", 2, struct.pack("!b", -7)),
            _typed_header("short", 3, struct.pack("!h", -300)),
            _typed_header("int", 4, struct.pack("!i", 70000)),
            _typed_header("long", 5, struct.pack("!q", -(2**40))),
            _typed_header("bytes", 6, struct.pack("!H", 3) + b"\x00\xff\x10"),
            _typed_header("string", 7, struct.pack("!H", 5) + "héllo".encode()[:5]),
            _typed_header("when", 8, struct.pack("!q", 1_764_000_000_123)),
            _typed_header("id", 9, bytes(range(16))),
        ]
    ),
    b"\x00binary payload\xff",
)


def test_headers_of_every_type_read_as_botocore_reads_them() -> None:
    [(expected, payload)] = botocore_messages(EVERY_TYPE)
    [(headers, ours)] = EventStreamReader().feed(EVERY_TYPE)
    assert dict(headers) == expected
    assert ours == payload == b"\x00binary payload\xff"


STREAM = b"".join([*TRANSCRIPTS["thinking and two tools"], EVERY_TYPE, *TRANSCRIPTS["text"]])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_the_reader_agrees_with_botocore_however_the_bytes_are_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(STREAM)]
    reader = EventStreamReader()
    ours = []
    for a, b in itertools.pairwise(bounds):
        ours += [(dict(h), p) for h, p in reader.feed(STREAM[a:b])]
    assert reader.pending == 0
    assert ours == botocore_messages(STREAM)


def test_a_message_cut_short_stays_pending() -> None:
    data = fake.text("Hello")
    reader = EventStreamReader()
    assert reader.feed(data[:-1]) == []
    assert reader.pending == len(data) - 1
    [(headers, _)] = reader.feed(data[-1:])
    assert headers[":event-type"] == "contentBlockDelta"
    assert reader.pending == 0


@pytest.mark.parametrize("where", [0, 3, 9, 20, -10, -1], ids=lambda w: f"byte {w}")
def test_a_corrupt_byte_is_an_error_as_it_is_to_botocore(where: int) -> None:
    data = bytearray(fake.text("Hello") + fake.text("again"))
    data[where] ^= 0x40
    with pytest.raises(EventStreamError):
        EventStreamReader().feed(bytes(data))
    with pytest.raises(ParserError):
        botocore_messages(bytes(data))


def test_malformed_headers_are_an_error() -> None:
    with pytest.raises(EventStreamError):
        parse_headers(b"\x04name\x07\x00\x09short")  # the value runs past the block
    with pytest.raises(EventStreamError):
        parse_headers(b"\x01x\x0a")  # no such type
    with pytest.raises(EventStreamError):
        parse_headers(_typed_header("a", 0, b"") + _typed_header("a", 1, b""))  # repeated


def test_an_impossible_length_is_an_error_not_a_wait() -> None:
    prelude = struct.pack("!II", 0xFFFFFFF0, 8)
    with pytest.raises(EventStreamError):
        EventStreamReader().feed(prelude + struct.pack("!I", zlib.crc32(prelude)))
