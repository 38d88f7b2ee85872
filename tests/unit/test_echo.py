from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamfn.chunks import Finish, TextDelta, Usage
from streamfn.content import Message
from streamfn.providers.echo import EchoProvider, count_words, tokenize
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
