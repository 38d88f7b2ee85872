from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfn.chunks import (
    Finish,
    ReasoningDelta,
    ReasoningEnd,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamfn.content import (
    Image,
    Message,
    NamedTool,
    Reasoning,
    ReasoningOption,
    Text,
    Tool,
    ToolCall,
)
from streamfn.providers.echo import EchoProvider, count_words, sign, tokenize
from streamfn.request import ChatRequest


def chat(*messages: tuple[str, str], **options: object) -> ChatRequest:
    return ChatRequest(
        messages=tuple(Message.of(r, c) for r, c in messages),  # type: ignore[arg-type]
        model="echo",
        **options,  # type: ignore[arg-type]
    )


async def collect(request: ChatRequest) -> list[object]:
    return [chunk async for chunk in EchoProvider(delay_s=0).stream(request)]


@given(st.text())
def test_tokens_concatenate_to_the_text_exactly(text: str) -> None:
    tokens = tokenize(text)
    assert "".join(tokens) == text
    assert all(tokens), "no empty tokens"
    # One token per word, or a single whitespace-only token.
    assert len(tokens) == (count_words(text) or (1 if text else 0))


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello world", ["Hello", " world"]),
        ("  lead\n\nnext  ", ["  lead", "\n\nnext  "]),
        ("one\r\ntwo", ["one", "\r\ntwo"]),
        ("   ", ["   "]),
        ("", []),
    ],
)
def test_tokenize_examples(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


async def test_streams_the_last_user_message_with_usage() -> None:
    chunks = await collect(
        chat(("system", "be brief"), ("user", "first turn"), ("assistant", "ok"), ("user", "a b c"))
    )
    assert chunks == [
        TextDelta("a"),
        TextDelta(" b"),
        TextDelta(" c"),
        Finish("stop", Usage(input_tokens=2 + 2 + 1 + 3, output_tokens=3)),
    ]


async def test_max_tokens_finishes_with_length() -> None:
    chunks = await collect(chat(("user", "one two three four"), max_tokens=2))
    assert chunks == [TextDelta("one"), TextDelta(" two"), Finish("length", Usage(4, 2))]


async def test_max_tokens_equal_to_the_reply_is_a_normal_stop() -> None:
    chunks = await collect(chat(("user", "one two"), max_tokens=2))
    assert chunks[-1] == Finish("stop", Usage(2, 2))


async def test_stop_sequence_cuts_the_reply_before_it() -> None:
    chunks = await collect(chat(("user", "alpha beta END gamma"), stop=("zzz", "END")))
    assert [c.text for c in chunks if isinstance(c, TextDelta)] == ["alpha", " beta "]
    assert chunks[-1] == Finish("stop", Usage(4, 2))


async def test_no_user_message_streams_nothing_and_stops() -> None:
    assert await collect(chat(("system", "only a system prompt"))) == [Finish("stop", Usage(4, 0))]


# --- reasoning, tool calls and images, offline ---------------------------------------------

WEATHER = Tool("get_weather", "weather", {"type": "object", "properties": {}})
TIME = Tool("get_time")


def with_tools(*messages: Message, **options: object) -> ChatRequest:
    return ChatRequest(messages=messages, model="echo", tools=(WEATHER, TIME), **options)  # type: ignore[arg-type]


async def test_a_reasoning_option_streams_a_signed_block_first() -> None:
    request = chat(("user", "a b c"), reasoning=ReasoningOption(effort="low"))
    chunks = await collect(request)
    text = "The user wrote 3 words. I will repeat them exactly."
    assert "".join(c.text for c in chunks if isinstance(c, ReasoningDelta)) == text
    end = next(c for c in chunks if isinstance(c, ReasoningEnd))
    assert end.block == Reasoning(text=text, signature=sign(text))
    assert chunks.index(end) < chunks.index(TextDelta("a"))
    thought = len(tokenize(text))
    assert chunks[-1] == Finish("stop", Usage(3, 3 + thought, reasoning_tokens=thought))


async def test_call_lines_become_parallel_tool_calls_streamed_in_fragments() -> None:
    text = 'Checking.\n/call get_weather {"city": "Paris"}\n/call get_time'
    chunks = await collect(with_tools(Message.of("user", text)))
    assert chunks[0] == TextDelta("Checking.")
    weather = ToolCall("call_1_0", "get_weather", '{"city": "Paris"}')
    time = ToolCall("call_1_1", "get_time", "{}")
    assert chunks[1] == ToolCallStart(weather.id, weather.name)
    fragments = [c.arguments for c in chunks if isinstance(c, ToolCallDelta) and c.id == weather.id]
    assert len(fragments) > 1
    assert "".join(fragments) == weather.arguments
    assert [c.call for c in chunks if isinstance(c, ToolCallEnd)] == [weather, time]
    assert isinstance(chunks[-1], Finish)
    assert chunks[-1].reason == "tool_calls"


async def test_call_lines_without_tools_or_with_tool_choice_none_are_text() -> None:
    text = "/call get_time {}"
    plain = await collect(chat(("user", text)))
    assert "".join(c.text for c in plain if isinstance(c, TextDelta)) == text
    none = await collect(with_tools(Message.of("user", text), tool_choice="none"))
    assert not any(isinstance(c, ToolCallStart) for c in none)
    unknown = await collect(with_tools(Message.of("user", "/call nope {}")))
    assert "".join(c.text for c in unknown if isinstance(c, TextDelta)) == "/call nope {}"


async def test_required_or_named_tool_choice_calls_without_a_line() -> None:
    required = await collect(with_tools(Message.of("user", "hi"), tool_choice="required"))
    named = await collect(with_tools(Message.of("user", "hi"), tool_choice=NamedTool("get_time")))
    assert [c.call.name for c in required if isinstance(c, ToolCallEnd)] == ["get_weather"]
    assert [c.call.name for c in named if isinstance(c, ToolCallEnd)] == ["get_time"]


async def test_tool_results_are_answered_with() -> None:
    call = ToolCall("call_1_0", "get_time", "{}")
    chunks = await collect(
        with_tools(
            Message.of("user", "/call get_time"),
            Message("assistant", tool_calls=(call,)),
            Message("tool", (Text("noon"),), tool_call_id="call_1_0"),
        )
    )
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "get_time returned noon"
    assert isinstance(chunks[-1], Finish)
    assert chunks[-1].reason == "stop"


async def test_a_changed_echo_reasoning_block_is_refused() -> None:
    forged = Reasoning(text="I changed this.", signature=sign("original"))
    chunks = await collect(
        with_tools(
            Message.of("user", "a"),
            Message("assistant", (Text("a"),), reasoning=(forged,)),
            Message.of("user", "b"),
        )
    )
    assert chunks == [
        StreamError(
            "bad_request",
            "echo: messages.1.reasoning.0 was changed: its signature does not match",
            retryable=False,
        )
    ]
    kept = Reasoning(text="original", signature=sign("original"))
    request = with_tools(
        Message.of("user", "a"), Message("assistant", reasoning=(kept,)), Message.of("user", "b")
    )
    assert (await collect(request))[-1] == Finish("stop", Usage(2, 1))


async def test_images_are_described() -> None:
    image = Image("image/png", data="iVBORw0KGgo=")
    chunks = await collect(ChatRequest((Message("user", (Text("see"), image)),), model="echo"))
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert text == "see [image: image/png, 9 bytes]"
