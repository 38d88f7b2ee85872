"""Gemini's stream read as `StreamChunk`s: the recorded transcripts of tests/fakes/gemini.py fed
through `SSEReader` and `providers.gemini.reading.Response`, whole and split at every byte."""

from __future__ import annotations

import orjson
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
from streamfn.content import Message, Reasoning, ToolCall
from streamfn.providers.gemini.reading import Response
from streamfn.providers.sse_reader import SSEReader
from streamfn.request import ChatRequest
from tests.fakes import gemini as g

REQUEST = ChatRequest(messages=(Message.of("user", "Weather in Paris?"),), model="gemini-3")


def read(pieces: list[bytes]) -> list[StreamChunk]:
    reader, state = SSEReader(), Response()
    out: list[StreamChunk] = []
    for piece in pieces:
        for _, data in reader.feed(piece):
            if not state.over:
                out += state.feed(orjson.loads(data))
    return [*out, state.final(REQUEST)]


def split_everywhere(transcript: list[bytes]) -> list[list[bytes]]:
    whole = b"".join(transcript)
    return [[whole[:i], whole[i:]] for i in range(1, len(whole), 7)]


def test_the_signature_on_the_last_empty_part_is_kept_and_tagged() -> None:
    assert read(g.TEXT_THEN_SIGNATURE) == [
        TextDelta("Hello"),
        TextDelta(" there."),
        ReasoningEnd(Reasoning(signature=f"gemini:{g.TEXT_SIGNATURE}")),
        Finish("stop", Usage(12, 30, reasoning_tokens=27)),
    ]


@pytest.mark.parametrize(
    "transcript",
    [g.TEXT_THEN_SIGNATURE, g.THOUGHTS_AND_TWO_CALLS, g.SIGNED_THOUGHTS, g.TEXT_AND_CALL_WITH_ID],
)
def test_a_transcript_split_anywhere_reads_the_same(transcript: list[bytes]) -> None:
    whole = read(transcript)
    for pieces in split_everywhere(transcript):
        assert read(pieces) == whole


def test_thoughts_then_parallel_calls_only_the_first_signed() -> None:
    weather = ToolCall(
        "call_vQRpaqzAPN2M9MoPxPq2uQ4_1", "get_weather", '{"city":"Paris"}', g.CALL_SIGNATURE
    )
    time = ToolCall("call_vQRpaqzAPN2M9MoPxPq2uQ4_2", "get_time", "{}")
    assert read(g.THOUGHTS_AND_TWO_CALLS) == [
        ReasoningDelta("**Planning**\n\nNeed the weather"),
        ReasoningDelta(" and the time."),
        # The thoughts were not signed (the call was): a plain block, Gemini wants none back.
        ReasoningEnd(Reasoning("**Planning**\n\nNeed the weather and the time.")),
        ToolCallStart(weather.id, "get_weather"),
        ToolCallDelta(weather.id, '{"city":"Paris"}'),
        ToolCallEnd(weather),
        ToolCallStart(time.id, "get_time"),
        ToolCallDelta(time.id, "{}"),
        ToolCallEnd(time),
        Finish("tool_calls", Usage(40, 79, reasoning_tokens=61)),
    ]


def test_a_call_keeps_geminis_own_id_and_takes_no_args_as_an_empty_object() -> None:
    chunks = read(g.TEXT_AND_CALL_WITH_ID)
    call = ToolCall("g1bmv6il", "get_time", "{}", g.CALL_SIGNATURE)
    assert chunks == [
        TextDelta("Let me check."),
        ToolCallStart("g1bmv6il", "get_time"),
        ToolCallDelta("g1bmv6il", "{}"),
        ToolCallEnd(call),
        Finish("tool_calls", Usage(83, 199, reasoning_tokens=178)),
    ]


def test_an_empty_signed_thought_part_closes_its_run_with_the_signature() -> None:
    assert read(g.SIGNED_THOUGHTS) == [
        ReasoningDelta("Two and two"),
        ReasoningEnd(Reasoning("Two and two", signature=f"gemini:{g.THOUGHT_SIGNATURE}")),
        TextDelta("Four."),
        Finish("stop", Usage(9, 32, reasoning_tokens=30)),
    ]


def test_a_blocked_prompt_is_a_content_filter_with_the_prompts_usage() -> None:
    assert read(g.PROMPT_BLOCKED) == [Finish("content_filter", Usage(9, 0))]


def test_safety_stops_output_as_content_filter() -> None:
    assert read(g.SAFETY_STOP) == [TextDelta("Here is how"), Finish("content_filter", Usage(15, 3))]


def test_max_tokens_is_length_with_cached_and_tool_use_prompt_tokens() -> None:
    assert read(g.MAX_TOKENS_CACHED)[-1] == Finish(
        "length", Usage(2107, 44, reasoning_tokens=40, cached_input_tokens=2048)
    )


def test_a_malformed_call_is_a_retryable_error_saying_what_the_model_wrote() -> None:
    [error] = read(g.MALFORMED_CALL)
    assert isinstance(error, StreamError)
    assert error.type == "upstream_error"
    assert error.retryable is True
    assert "MALFORMED_FUNCTION_CALL" in error.message
    assert "call:get_weather{city:Paris" in error.message


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
        ("A_REASON_FROM_NEXT_YEAR", "stop"),
    ],
)
def test_finish_reasons_map_to_openai_vocabulary(reason: str, finish: str) -> None:
    final = read([g.chunk(g.text("x"), g._usage(1, 1), finish=reason)])[-1]
    assert isinstance(final, Finish)
    assert final.reason == finish


def test_a_body_without_a_finish_is_truncated() -> None:
    final = read(g.TEXT_THEN_SIGNATURE[:2])[-1]
    assert isinstance(final, StreamError)
    assert final.type == "upstream_error"
    assert "ended before it finished" in final.message


def test_without_usage_the_counts_are_estimated() -> None:
    final = read(
        [
            b'data: {"candidates": [{"content": {"parts": [{"text": "abcdefgh"}]},'
            b'"finishReason": "STOP"}]}\r\n\r\n'
        ]
    )[-1]
    assert final == Finish("stop", Usage(5, 2, estimated=True))


def test_what_follows_the_finish_is_not_read() -> None:
    chunks = read([*g.TEXT_THEN_SIGNATURE, g.chunk(g.text("late"), g._usage(12, 9))])
    assert TextDelta("late") not in chunks


def test_a_call_without_a_name_is_malformed() -> None:
    with pytest.raises(ValueError, match="without a name"):
        Response().feed({"candidates": [{"content": {"parts": [{"functionCall": {}}]}}]})
