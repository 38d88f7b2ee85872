"""The native dialect, byte for byte: every kind of chunk as the event bytes a client reads."""

from __future__ import annotations

import pytest

from streamfn.chunks import (
    Finish,
    ReasoningDelta,
    ReasoningEnd,
    StreamChunk,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from streamfn.content import Reasoning, ToolCall
from streamfn.dialects.native import events
from streamfn.prices import PricedUsage
from streamfn.sse import encode


def wire(chunk: StreamChunk, first_id: int = 7) -> bytes:
    return b"".join(encode(e, id=first_id + i) for i, e in enumerate(events(chunk)))


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (TextDelta(" Hi\nthere"), b"id: 7\nevent: token\ndata:  Hi\ndata: there\n\n"),
        (ReasoningDelta("Let me see"), b"id: 7\nevent: reasoning\ndata: Let me see\n\n"),
        (
            ReasoningEnd(Reasoning("Let me see.", signature="EqQB")),
            b'id: 7\nevent: reasoning_done\ndata: {"type":"thinking","text":"Let me see.",'
            b'"signature":"EqQB"}\n\n',
        ),
        (
            ReasoningEnd(Reasoning("plain")),
            b'id: 7\nevent: reasoning_done\ndata: {"type":"thinking","text":"plain",'
            b'"signature":null}\n\n',
        ),
        (
            ReasoningEnd(Reasoning(redacted="ENC==")),
            b'id: 7\nevent: reasoning_done\ndata: {"type":"redacted_thinking","data":"ENC=="}\n\n',
        ),
        (
            ToolCallStart("call_1", "get_weather"),
            b'id: 7\nevent: tool_call_start\ndata: {"id":"call_1","name":"get_weather"}\n\n',
        ),
        (
            ToolCallDelta("call_1", '{"city":'),
            b'id: 7\nevent: tool_call_delta\ndata: {"id":"call_1","arguments":"{\\"city\\":"}\n\n',
        ),
        (
            ToolCallEnd(ToolCall("call_1", "get_weather", '{"city":"Zürich"}')),
            b'id: 7\nevent: tool_call\ndata: {"id":"call_1","name":"get_weather",'
            b'"arguments":"{\\"city\\":\\"Z\xc3\xbcrich\\"}"}\n\n',
        ),
        (
            Finish(
                "tool_calls",
                PricedUsage(30, 12, reasoning_tokens=5, cached_input_tokens=8, cost_usd=0.0001645),
                served_by="openai/gpt-4o",
            ),
            b'id: 7\nevent: usage\ndata: {"input_tokens":30,"output_tokens":12,"estimated":false,'
            b'"reasoning_tokens":5,"cached_input_tokens":8,"cache_creation_input_tokens":null,'
            b'"cost_usd":0.0001645,"provider":"openai","model":"gpt-4o"}'
            b"\n\n"
            b"id: 8\nevent: done\ndata: tool_calls\n\n",
        ),
        (
            StreamError("rate_limit", "slow down", retryable=True, retry_after=2),
            b'id: 7\nevent: error\ndata: {"type":"rate_limit","message":"slow down",'
            b'"retryable":true}\n\n',
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, bytes) else "",
)
def test_each_chunk_kind_as_bytes(chunk: StreamChunk, expected: bytes) -> None:
    assert wire(chunk) == expected
