"""`echo`: an offline, deterministic provider that streams the last user message back.

It makes a fresh clone stream something real with no keys, and gives tests and benchmarks a
provider whose output and pace are known. It exercises every kind of chunk:

- **Reasoning**: a request with a `reasoning` option first gets a reasoning block, signed
  (`echo.<sha256>`) the way Anthropic signs thinking. Blocks sent back on a later turn with an
  `echo.` signature must match their text, or the request fails as a bad request.
- **Tool calls**: with `tools` in the request (and `tool_choice` not `none`), each line of the
  last user message of the form `/call NAME {json arguments}` becomes a call of that tool,
  several lines making parallel calls; the rest of the message is echoed as text first. With
  `tool_choice` `required` (or a named tool) and no such line, echo calls the named (or first)
  tool with `{}`. When the conversation ends with tool results, echo answers with them.
- **Images**: each image of the echoed message is described as `[image: type, N bytes]`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncGenerator, Iterator

from streamfn.chunks import (
    Finish,
    FinishReason,
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
from streamfn.content import Message, NamedTool, Reasoning, ToolCall
from streamfn.request import ChatRequest

# A token is a word with the whitespace before it; trailing whitespace joins the last token, so
# the tokens concatenate to the text exactly.
_TOKEN = re.compile(r"\s*\S+(?:\s+\Z)?|\s+\Z")
_WORD = re.compile(r"\S+")
_CALL = re.compile(r"^/call ([a-zA-Z0-9_-]{1,64})(?:[ \t]+(.*?))?[ \t]*$", re.MULTILINE)
_ARGUMENT_PIECE = 8  # characters of arguments per delta, so that calls stream in fragments


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def sign(text: str) -> str:
    """Echo's signature of a reasoning block."""
    return "echo." + hashlib.sha256(text.encode()).hexdigest()[:32]


def _reasoning_text(message: Message | None) -> str:
    words = count_words(message.text) if message else 0
    return f"The user wrote {words} words. I will repeat them exactly."


def _image_note(message: Message) -> str:
    return "".join(f" [image: {i.media_type or 'url'}, {i.size} bytes]" for i in message.images)


class EchoProvider:
    """Streams the last user message word by word, `delay_s` apart."""

    def __init__(self, delay_s: float) -> None:
        self._delay_s = delay_s

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        if (error := _bad_signature(request)) is not None:
            yield error
            return
        last = request.last_user_message()
        tokens: list[str] = []  # every output token, for usage
        reasoning_tokens = 0
        if request.reasoning is not None:
            text = _reasoning_text(last)
            pieces = tokenize(text)
            for piece in pieces:
                await asyncio.sleep(self._delay_s)
                yield ReasoningDelta(piece)
            reasoning_tokens = len(pieces)
            yield ReasoningEnd(Reasoning(text=text, signature=sign(text)))
        text, calls = _plan(request, last)
        reason: FinishReason = "tool_calls" if calls else "stop"
        cut = min((i for i in (text.find(s) for s in request.stop) if i >= 0), default=None)
        if cut is not None:
            text, calls, reason = text[:cut], [], "stop"
        pieces = tokenize(text)
        limit = request.max_tokens
        if limit is not None and len(pieces) > limit:
            pieces, calls, reason = pieces[:limit], [], "length"
        for piece in pieces:
            await asyncio.sleep(self._delay_s)
            tokens.append(piece)
            yield TextDelta(piece)
        for call in calls:
            yield ToolCallStart(call.id, call.name)
            for fragment in _fragments(call.arguments):
                await asyncio.sleep(self._delay_s)
                tokens.append(fragment)
                yield ToolCallDelta(call.id, fragment)
            yield ToolCallEnd(call)
        input_tokens = sum(count_words(m.text) for m in request.messages)
        yield Finish(
            reason,
            Usage(
                input_tokens=input_tokens,
                output_tokens=len(tokens) + reasoning_tokens,
                reasoning_tokens=reasoning_tokens if request.reasoning else None,
            ),
        )

    async def aclose(self) -> None:
        """Nothing to release: echo holds no connections."""


def _plan(request: ChatRequest, last: Message | None) -> tuple[str, list[ToolCall]]:
    """The text to echo and the tool calls to make."""
    results = list(_trailing_results(request))
    if results:
        return "\n".join(results), []
    text = (last.text + _image_note(last)) if last else ""
    if not request.tools or request.tool_choice == "none":
        return text, []
    names = {tool.name for tool in request.tools}
    calls: list[ToolCall] = []

    def call(match: re.Match[str]) -> str:
        arguments = match[2] or "{}"
        if match[1] not in names or not _is_object(arguments):
            return match[0]  # not a call of one of the tools: plain text
        calls.append(ToolCall(f"call_{len(request.messages)}_{len(calls)}", match[1], arguments))
        return ""

    rest = _CALL.sub(call, text)
    if calls:
        text = rest.strip()
    elif request.tool_choice == "required" or isinstance(request.tool_choice, NamedTool):
        choice = request.tool_choice
        name = choice.name if isinstance(choice, NamedTool) else request.tools[0].name
        calls.append(ToolCall(f"call_{len(request.messages)}_0", name, "{}"))
    return text, calls


def _trailing_results(request: ChatRequest) -> Iterator[str]:
    """`name returned result` for each tool result that ends the conversation."""
    tail: list[Message] = []
    for message in reversed(request.messages):
        if message.role != "tool":
            break
        tail.insert(0, message)
    for message in tail:
        yield f"{request.call_name(message.tool_call_id)} returned {message.text}"


def _fragments(arguments: str) -> Iterator[str]:
    for i in range(0, len(arguments), _ARGUMENT_PIECE):
        yield arguments[i : i + _ARGUMENT_PIECE]


def _bad_signature(request: ChatRequest) -> StreamError | None:
    """A reasoning block that claims echo's signature but does not match its text."""
    for i, message in enumerate(request.messages):
        for j, block in enumerate(message.reasoning):
            signature = block.signature
            if signature and signature.startswith("echo.") and signature != sign(block.text):
                return StreamError(
                    "bad_request",
                    f"echo: messages.{i}.reasoning.{j} was changed: its signature does not match",
                    retryable=False,
                )
    return None


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
