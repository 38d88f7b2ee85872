"""`echo`: an offline, deterministic provider that streams the last user message back.

It makes a fresh clone stream something real with no keys, and gives tests and benchmarks a
provider whose output and pace are known.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from streamfn.chunks import Finish, FinishReason, StreamChunk, TextDelta, Usage
from streamfn.request import ChatRequest

# A token is a word with the whitespace before it; trailing whitespace joins the last token, so
# the tokens concatenate to the text exactly.
_TOKEN = re.compile(r"\s*\S+(?:\s+\Z)?|\s+\Z")
_WORD = re.compile(r"\S+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


class EchoProvider:
    """Streams the last user message word by word, `delay_s` apart."""

    def __init__(self, delay_s: float) -> None:
        self._delay_s = delay_s

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        text = request.last_user_message() or ""
        reason: FinishReason = "stop"
        cut = min((i for i in (text.find(s) for s in request.stop) if i >= 0), default=None)
        if cut is not None:
            text = text[:cut]
        tokens = tokenize(text)
        if request.max_tokens is not None and len(tokens) > request.max_tokens:
            tokens, reason = tokens[: request.max_tokens], "length"
        input_tokens = sum(count_words(m.content) for m in request.messages)
        for token in tokens:
            await asyncio.sleep(self._delay_s)
            yield TextDelta(token)
        yield Finish(reason, Usage(input_tokens=input_tokens, output_tokens=len(tokens)))

    async def aclose(self) -> None:
        """Nothing to release: echo holds no connections."""
