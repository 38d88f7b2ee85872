"""`dialects.blocks`: a stream's chunks as sequential blocks (Anthropic's content blocks, the
Responses API's output items), and `routing`: which provider a model name means."""

from __future__ import annotations

from streamfn.chunks import (
    Delta,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from streamfn.content import Reasoning, ToolCall
from streamfn.dialects.blocks import Begin, BlockEvent, Blocks, End, Piece
from streamfn.routing import Listed, ModelRoutes

A = ToolCall("a", "f", '{"x": 1}')
B = ToolCall("b", "g", "{}")


def run(*chunks: Delta) -> list[BlockEvent]:
    blocks = Blocks()
    out: list[BlockEvent] = []
    for chunk in chunks:
        out += blocks.feed(chunk)
    return out + blocks.finish()


def test_text_then_a_call_then_text() -> None:
    assert run(
        TextDelta("Hi"),
        TextDelta("."),
        ToolCallStart("a", "f"),
        ToolCallDelta("a", '{"x": 1}'),
        ToolCallEnd(A),
        TextDelta("Bye"),
    ) == [
        Begin(0, "text"),
        Piece(0, "text", "Hi"),
        Piece(0, "text", "."),
        End(0, "text"),
        Begin(1, "tool_call", "a", "f"),
        Piece(1, "tool_call", '{"x": 1}'),
        End(1, "tool_call", call=A),
        Begin(2, "text"),
        Piece(2, "text", "Bye"),
        End(2, "text"),
    ]


def test_interleaved_calls_wait_their_turn_and_the_open_one_streams_at_once() -> None:
    blocks = Blocks()
    assert blocks.feed(ToolCallStart("a", "f")) == [Begin(0, "tool_call", "a", "f")]
    assert blocks.feed(ToolCallStart("b", "g")) == []
    assert blocks.feed(ToolCallDelta("b", "{}")) == []
    assert blocks.feed(ToolCallDelta("a", '{"x"')) == [Piece(0, "tool_call", '{"x"')]
    assert blocks.feed(ToolCallEnd(B)) == []
    assert blocks.feed(ToolCallDelta("a", ": 1}")) == [Piece(0, "tool_call", ": 1}")]
    assert blocks.feed(ToolCallEnd(A)) == [
        End(0, "tool_call", call=A),
        Begin(1, "tool_call", "b", "g"),
        Piece(1, "tool_call", "{}"),
        End(1, "tool_call", call=B),
    ]
    assert blocks.finish() == []


def test_reasoning_arriving_while_a_call_is_open_waits_whole() -> None:
    whole = Reasoning("Hm.", "sig")
    assert run(
        ToolCallStart("a", "f"),
        ReasoningDelta("Hm."),
        ReasoningEnd(whole),
        ToolCallEnd(A),
    ) == [
        Begin(0, "tool_call", "a", "f"),
        End(0, "tool_call", call=A),
        Begin(1, "reasoning"),
        Piece(1, "reasoning", "Hm."),
        End(1, "reasoning", reasoning=whole),
    ]


def test_a_lone_reasoning_end_is_a_whole_block_that_ends_open_text() -> None:
    redacted = Reasoning(redacted="ENC")
    assert run(TextDelta("a"), ReasoningEnd(redacted), TextDelta("b")) == [
        Begin(0, "text"),
        Piece(0, "text", "a"),
        End(0, "text"),
        Begin(1, "reasoning", whole=redacted),
        End(1, "reasoning", reasoning=redacted),
        Begin(2, "text"),
        Piece(2, "text", "b"),
        End(2, "text"),
    ]


def test_finish_closes_what_is_open_and_replays_what_waits() -> None:
    """A stream cut short (an error, a length finish mid-call): every block still ends."""
    assert run(ToolCallStart("a", "f"), ToolCallDelta("a", "{"), TextDelta("t")) == [
        Begin(0, "tool_call", "a", "f"),
        Piece(0, "tool_call", "{"),
        End(0, "tool_call"),
        Begin(1, "text"),
        Piece(1, "text", "t"),
        End(1, "text"),
    ]


def test_a_call_that_comes_whole() -> None:
    assert run(ToolCallEnd(A)) == [
        Begin(0, "tool_call", "a", "f"),
        Piece(0, "tool_call", '{"x": 1}'),
        End(0, "tool_call", call=A),
    ]


ROUTES = ModelRoutes(
    {"claude-opus-5-5": "openai/gpt-5", "claude-*": "echo", "small": "anthropic"},
    [Listed("echo", ("echo",)), Listed("openai"), Listed("anthropic"), Listed("vllm", ("m1",))],
)


def test_routing() -> None:
    assert ROUTES.target(None) == (None, None)
    assert ROUTES.target("claude-opus-5-5") == ("openai", "gpt-5")  # exact alias first
    assert ROUTES.target("claude-haiku-4-5") == ("echo", None)  # then patterns
    assert ROUTES.target("small") == ("anthropic", None)
    assert ROUTES.target("openai/gpt-4o") == ("openai", "gpt-4o")
    assert ROUTES.target("m1") == ("vllm", "m1")  # the provider that lists it
    assert ROUTES.target("meta-llama/Llama-3") == (None, "meta-llama/Llama-3")
    unaliased = ModelRoutes({}, [Listed("echo"), Listed("anthropic")])
    assert unaliased.target("claude-sonnet-4-5") == ("anthropic", "claude-sonnet-4-5")
    assert unaliased.target("gemini-2.5-flash") == (None, "gemini-2.5-flash")  # not configured
