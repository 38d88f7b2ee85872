"""The OpenAI and AI SDK dialects, byte for byte: each kind of chunk as the `data:` lines a
client reads, errors before the first chunk (an HTTP status in the protocol's shape) and after
it (in-band, then a clean end)."""

from __future__ import annotations

import json

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
    Usage,
)
from streamfn.content import Reasoning, ToolCall
from streamfn.dialects import aisdk, openai
from streamfn.prices import PricedUsage
from streamfn.sse import encode
from streamfn.streaming import error_response

CALL = ToolCall("call_1", "get_weather", '{"city":"Paris"}')
STREAM: list[StreamChunk] = [
    ReasoningDelta("Hm"),
    ReasoningEnd(Reasoning("Hm", signature="sig")),
    TextDelta("Hi"),
    ToolCallStart("call_1", "get_weather"),
    ToolCallDelta("call_1", '{"city":"Paris"}'),
    ToolCallEnd(CALL),
    Finish(
        "tool_calls",
        PricedUsage(
            5,
            7,
            reasoning_tokens=1,
            cached_input_tokens=2,
            cache_creation_input_tokens=1,
            cost_usd=0.000042,
        ),
    ),
]


def data_lines(
    encoder: openai.ChunkEncoder | aisdk.PartEncoder, chunks: list[StreamChunk]
) -> bytes:
    events = [e for chunk in chunks for e in encoder(chunk)]
    return b"".join(encode(e, id=i + 1) for i, e in enumerate(events))


def test_openai_chunks_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: 1764000000.5)
    encoder = openai.ChunkEncoder(id="chatcmpl-r1", model="echo", include_usage=True)
    head = (
        '{"id":"chatcmpl-r1","object":"chat.completion.chunk","created":1764000000,"model":"echo",'
    )

    def chunk(n: int, delta: str, finish: str = "null") -> str:
        choice = f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}'
        return f'id: {n}\ndata: {head}"choices":[{choice}]}}\n\n'

    assert data_lines(encoder, STREAM).decode() == "".join(
        [
            chunk(1, '{"role":"assistant","content":""}'),
            chunk(2, '{"reasoning_content":"Hm"}'),
            chunk(
                3,
                '{"reasoning_details":[{"type":"reasoning.text","text":"Hm","signature":"sig"}]}',
            ),
            chunk(4, '{"content":"Hi"}'),
            chunk(
                5,
                '{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
                '"function":{"name":"get_weather","arguments":""}}]}',
            ),
            chunk(
                6,
                '{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\"Paris\\"}"}}]}',
            ),
            chunk(7, "{}", '"tool_calls"'),
            f'id: 8\ndata: {head}"choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":7,'
            '"total_tokens":12,"prompt_tokens_details":{"cached_tokens":2,"cache_write_tokens":1},'
            '"completion_tokens_details":{"reasoning_tokens":1},"cost_usd":4.2e-05}}\n\n',
            "id: 9\ndata: [DONE]\n\n",
        ]
    )


def test_openai_error_after_the_first_chunk_is_in_band_then_done() -> None:
    encoder = openai.ChunkEncoder(id="chatcmpl-r1", model="echo", include_usage=False)
    encoder(TextDelta("partial"))
    events = encoder(StreamError("overloaded", "busy", retryable=True))
    assert b"".join(encode(e, id=1) for e in events) == (
        b'id: 1\ndata: {"error":{"message":"busy","type":"server_error","param":null,'
        b'"code":"overloaded"}}\n\nid: 1\ndata: [DONE]\n\n'
    )


@pytest.mark.parametrize(
    ("error", "status", "body", "retry_after"),
    [
        (
            StreamError("rate_limit", "slow", True, 2.5),
            429,
            {"message": "slow", "type": "rate_limit_error", "param": None, "code": "rate_limit"},
            "3",
        ),
        (
            StreamError("auth", "key refused", False),
            502,
            {"message": "key refused", "type": "api_error", "param": None, "code": "auth"},
            None,
        ),
        (
            StreamError("bad_request", "no", False),
            400,
            {
                "message": "no",
                "type": "invalid_request_error",
                "param": None,
                "code": "bad_request",
            },
            None,
        ),
    ],
)
def test_openai_error_before_the_first_chunk_is_a_status(
    error: StreamError, status: int, body: dict[str, object], retry_after: str | None
) -> None:
    response = error_response(openai.DIALECT, error)
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {"error": body}
    assert response.headers.get("retry-after") == retry_after


def test_ai_sdk_parts_byte_for_byte() -> None:
    encoder = aisdk.PartEncoder(message_id="msg-1", provider="echo", model="echo")
    lines = [
        '{"type":"start","messageId":"msg-1"}',
        '{"type":"start-step"}',
        '{"type":"reasoning-start","id":"reasoning-1"}',
        '{"type":"reasoning-delta","id":"reasoning-1","delta":"Hm"}',
        '{"type":"reasoning-end","id":"reasoning-1","providerMetadata":{"streamfn":{"signature":"sig"}}}',
        '{"type":"text-start","id":"text-2"}',
        '{"type":"text-delta","id":"text-2","delta":"Hi"}',
        '{"type":"text-end","id":"text-2"}',
        '{"type":"tool-input-start","toolCallId":"call_1","toolName":"get_weather"}',
        '{"type":"tool-input-delta","toolCallId":"call_1","inputTextDelta":"{\\"city\\":\\"Paris\\"}"}',
        '{"type":"tool-input-available","toolCallId":"call_1","toolName":"get_weather",'
        '"input":{"city":"Paris"}}',
        '{"type":"finish-step"}',
        '{"type":"finish","finishReason":"tool-calls","messageMetadata":{"provider":"echo",'
        '"model":"echo","usage":{"inputTokens":5,"outputTokens":7,"totalTokens":12,'
        '"inputTokenDetails":{"noCacheTokens":2,"cacheReadTokens":2,"cacheWriteTokens":1},'
        '"outputTokenDetails":{"textTokens":6,"reasoningTokens":1},'
        '"reasoningTokens":1,"cachedInputTokens":2,"costUsd":4.2e-05}}}',
        "[DONE]",
    ]
    expected = "".join(f"id: {i + 1}\ndata: {line}\n\n" for i, line in enumerate(lines))
    assert data_lines(encoder, STREAM).decode() == expected


def test_ai_sdk_redacted_reasoning_and_cut_tool_input() -> None:
    encoder = aisdk.PartEncoder(message_id="m", provider="p", model="x")
    parts = [
        json.loads(e.data)
        for chunk in [
            ReasoningEnd(Reasoning(redacted="ENC")),
            ToolCallStart("c", "t"),
            ToolCallEnd(ToolCall("c", "t", '{"cut')),
            Finish("length", Usage(1, 1)),
        ]
        for e in encoder(chunk)
        if e.data != "[DONE]"
    ]
    assert parts[2:4] == [
        {"type": "reasoning-start", "id": "reasoning-1"},
        {
            "type": "reasoning-end",
            "id": "reasoning-1",
            "providerMetadata": {"streamfn": {"redactedData": "ENC"}},
        },
    ]
    assert not any(p["type"] == "tool-input-available" for p in parts)  # never became whole
    assert parts[-1]["finishReason"] == "length"


def test_ai_sdk_error_after_the_first_chunk_is_an_error_part_then_finish() -> None:
    encoder = aisdk.PartEncoder(message_id="m", provider="p", model="x")
    encoder(TextDelta("partial"))
    events = encoder(StreamError("timeout", "too slow", retryable=True))
    assert [e.data for e in events] == [
        '{"type":"text-end","id":"text-1"}',
        '{"type":"error","errorText":"too slow"}',
        '{"type":"finish","finishReason":"error"}',
        "[DONE]",
    ]


def test_ai_sdk_error_before_the_first_chunk_is_a_status_with_the_native_body() -> None:
    response = error_response(aisdk.DIALECT, StreamError("overloaded", "busy", True))
    assert response.status_code == 503
    assert json.loads(bytes(response.body)) == {
        "error": {"type": "overloaded", "message": "busy", "retryable": True}
    }
    assert aisdk.DIALECT.stream_headers == {"x-vercel-ai-ui-message-stream": "v1"}
