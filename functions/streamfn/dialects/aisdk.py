"""The Vercel AI SDK's UI message stream: `POST /api/chat`, what `useChat` and its
`DefaultChatTransport` send and read.

The body is the transport's: `id` (the chat), `messages` (UI messages with parts), `trigger`,
`messageId`, and any extra fields the app adds (`provider`, `model`, `system`, `max_tokens`,
`temperature`, `top_p`, `tools`, `tool_choice`, `reasoning`, as in the native body).

The answer is the UI message stream protocol, version 1 (vercel/ai,
packages/ai/src/ui-message-stream/ui-message-chunks.ts): SSE `data:` lines of JSON chunks,
`start`, `start-step`, `text-start`/`-delta`/`-end`, `reasoning-start`/`-delta`/`-end`,
`tool-input-start`/`-delta`/`-available`, `finish-step`, `finish` (usage in its
`messageMetadata`), then `data: [DONE]`. A call's signature (Gemini's thought signature) rides
in `tool-input-available`'s `providerMetadata.google.thoughtSignature`, where @ai-sdk/google puts
it: the client keeps it as the tool part's `callProviderMetadata` and sends it back. A failure
is an `error` chunk, then `finish`. The client rejects the whole stream at the first chunk it
does not accept, so only the chunk types and fields that `ai` 5.x, 6.x and 7.x all accept are
sent (checked against each in tests/node).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
from streamfn.content import (
    InvalidContent,
    Message,
    Part,
    Reasoning,
    Text,
    ToolCall,
    image_from_url,
)
from streamfn.controls import NO_CONTROLS
from streamfn.dialects import Event, dumps
from streamfn.dialects.native import (
    FallbackName,
    MaxTokens,
    ModelName,
    NamedToolIn,
    NativeDialect,
    ProviderName,
    ReasoningOptionIn,
    Temperature,
    ToolIn,
    TopP,
    tool_options,
)
from streamfn.prices import cost_of
from streamfn.request import ChatRequest, Limits

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}

# Where a reasoning block's signature (or redacted data) travels in `providerMetadata`, so that
# the client keeps it on the reasoning part and sends it back with the next request.
METADATA_KEY = "streamfn"
# Where a tool call's signature travels: @ai-sdk/google's own key and field
# (packages/google/src/convert-to-google-generative-ai-messages.ts reads them back).
GOOGLE_KEY = "google"


class UIPart(BaseModel):
    """A part of a UI message; parts streamfn does not use (sources, data) pass unread."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    type: str = Field(max_length=256, pattern=NO_CONTROLS)  # tool-<name>: a tool's name
    text: str | None = None
    url: str | None = None  # file parts
    mediaType: str | None = None
    toolCallId: str | None = Field(default=None, max_length=256, pattern=NO_CONTROLS)
    toolName: str | None = Field(default=None, max_length=64, pattern=NO_CONTROLS)
    state: str | None = None
    input: Any = None
    output: Any = None
    errorText: str | None = None
    providerMetadata: dict[str, Any] | None = None
    callProviderMetadata: dict[str, Any] | None = None  # a tool part's, from its call


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    id: str = Field(default="", max_length=256, pattern=NO_CONTROLS)  # may be the answer's id
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = Field(max_length=1000)


class ChatBody(BaseModel):
    """`POST /api/chat`: the AI SDK transport's body and the app's extra fields, of the types
    the schema says (`temperature: false` is not a number)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    id: str | None = Field(default=None, max_length=256, pattern=NO_CONTROLS)  # the chat's
    messages: list[UIMessage] = Field(min_length=1, max_length=1000)
    trigger: str | None = None
    messageId: str | None = Field(default=None, max_length=256, pattern=NO_CONTROLS)
    provider: ProviderName = None
    model: ModelName = None
    system: str | None = None
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None
    tools: list[ToolIn] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolIn | None = None
    reasoning: ReasoningOptionIn | None = None
    fallbacks: list[FallbackName] = Field(
        default=[], max_length=5, description="provider/model alternatives, as /chat/stream's"
    )

    def response_message_id(self, fallback: str) -> str:
        """The id of the assistant message the stream writes: the last message's when it is an
        assistant's the client continues (after running a tool), else a new one."""
        last = self.messages[-1]
        return last.id if last.role == "assistant" and last.id else fallback

    def to_request(self, *, model: str, limits: Limits) -> ChatRequest:
        messages: list[Message] = [Message.of("system", self.system)] if self.system else []
        for i, message in enumerate(self.messages):
            messages += _messages(message, i, limits)
        return ChatRequest(
            messages=tuple(messages),
            model=model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            # Tools, tool_choice and reasoning mean what they mean in the native body.
            **tool_options(self.tools, self.tool_choice, self.reasoning),
        ).capped(limits.max_tokens_cap)


def _tool_name(part: UIPart) -> str | None:
    if part.type == "dynamic-tool":
        return part.toolName
    if part.type.startswith("tool-"):
        return part.type.removeprefix("tool-")
    return None


def _messages(message: UIMessage, i: int, limits: Limits) -> list[Message]:
    """One UI message as conversation turns. An assistant message may hold several steps
    (`step-start` parts between them), each a turn with its tool calls, then their results."""
    if message.role != "assistant":
        content: list[Part] = []
        for j, part in enumerate(message.parts):
            param = f"messages.{i}.parts.{j}"
            if part.type == "text" and part.text:
                content.append(Text(part.text))
            elif part.type == "file":
                if not (part.mediaType or "").startswith("image/") or not part.url:
                    raise InvalidContent(param, "only image files are supported")
                content.append(
                    image_from_url(part.url, param=f"{param}.url", max_bytes=limits.max_image_bytes)
                )
        return [Message(message.role, tuple(content))] if content else []
    turns: list[Message] = []
    step: list[UIPart] = []
    for part in [*message.parts, UIPart(type="step-start")]:
        if part.type != "step-start":
            step.append(part)
            continue
        turns += _step(step)
        step = []
    return turns


def _step(parts: list[UIPart]) -> list[Message]:
    text: list[str] = []
    reasoning: list[Reasoning] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for part in parts:
        name = _tool_name(part)
        if part.type == "text" and part.text:
            text.append(part.text)
        elif part.type == "reasoning":
            meta = (part.providerMetadata or {}).get(METADATA_KEY) or {}
            reasoning.append(
                Reasoning(
                    part.text or "",
                    signature=meta.get("signature"),
                    redacted=meta.get("redactedData"),
                )
            )
        elif name and part.toolCallId and part.state in ("output-available", "output-error"):
            # A call is sent back only with its result: a call without one cannot be answered.
            arguments = json.dumps(part.input if part.input is not None else {})
            google = (part.callProviderMetadata or {}).get(GOOGLE_KEY)
            signature = google.get("thoughtSignature") if isinstance(google, dict) else None
            signature = signature if isinstance(signature, str) and signature else None
            calls.append(ToolCall(part.toolCallId, name, arguments, signature))
            output = part.errorText if part.state == "output-error" else part.output
            result = output if isinstance(output, str) else json.dumps(output)
            results.append(Message("tool", (Text(result or ""),), tool_call_id=part.toolCallId))
    if not (text or reasoning or calls):
        return []
    turn = Message("assistant", (Text("".join(text)),), tuple(calls), reasoning=tuple(reasoning))
    return [turn, *results]


# The AI SDK's finish reasons (`finish.finishReason`).
_FINISH: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "content_filter": "content-filter",
}


def _usage(usage: Usage) -> dict[str, Any]:
    """The AI SDK's `LanguageModelUsage` (ai 6's, with ai 5's flat `reasoningTokens` and
    `cachedInputTokens` too), and what the request cost in USD (`costUsd`, null where the
    model's price is not known)."""
    out: dict[str, Any] = {
        "inputTokens": usage.input_tokens,
        "outputTokens": usage.output_tokens,
        "totalTokens": usage.input_tokens + usage.output_tokens,
    }
    read, written = usage.cached_input_tokens, usage.cache_creation_input_tokens
    if read is not None or written is not None:
        out["inputTokenDetails"] = {
            "noCacheTokens": max(usage.input_tokens - (read or 0) - (written or 0), 0),
            **({} if read is None else {"cacheReadTokens": read}),
            **({} if written is None else {"cacheWriteTokens": written}),
        }
    if usage.reasoning_tokens is not None:
        out["outputTokenDetails"] = {
            "textTokens": max(usage.output_tokens - usage.reasoning_tokens, 0),
            "reasoningTokens": usage.reasoning_tokens,
        }
        out["reasoningTokens"] = usage.reasoning_tokens
    if read is not None:
        out["cachedInputTokens"] = read
    if usage.estimated:
        out["estimated"] = True
    out["costUsd"] = cost_of(usage)
    return out


DONE = Event(None, "[DONE]")


class PartEncoder:
    """One stream's UI message chunks. Text and reasoning come in blocks with ids of their
    own; a block is closed when something else begins, and every open one at the end."""

    def __init__(self, *, message_id: str, provider: str, model: str) -> None:
        self._message_id = message_id
        self._metadata = {"provider": provider, "model": model}
        self._started = False
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", id)
        self._blocks = 0

    @staticmethod
    def _part(**fields: Any) -> Event:
        return Event(None, dumps(fields))

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        kind, id = self._open
        self._open = None
        return [self._part(type=f"{kind}-end", id=id)]

    def _into(self, kind: str) -> tuple[list[Event], str]:
        """The events that open a `kind` block (closing another first), and its id."""
        if self._open is not None and self._open[0] == kind:
            return [], self._open[1]
        out = self._close()
        self._blocks += 1
        id = f"{kind}-{self._blocks}"
        self._open = (kind, id)
        return [*out, self._part(type=f"{kind}-start", id=id)], id

    def __call__(self, chunk: StreamChunk) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            out += [
                self._part(type="start", messageId=self._message_id),
                self._part(type="start-step"),
            ]
        match chunk:
            case TextDelta(text=text):
                opening, id = self._into("text")
                out += [*opening, self._part(type="text-delta", id=id, delta=text)]
            case ReasoningDelta(text=text):
                opening, id = self._into("reasoning")
                out += [*opening, self._part(type="reasoning-delta", id=id, delta=text)]
            case ReasoningEnd(block=block):
                opening, id = self._into("reasoning")  # a redacted block has no deltas
                meta = {}
                if block.signature is not None:
                    meta["signature"] = block.signature
                if block.redacted is not None:
                    meta["redactedData"] = block.redacted
                self._open = None
                end: dict[str, Any] = {"type": "reasoning-end", "id": id}
                if meta:
                    end["providerMetadata"] = {METADATA_KEY: meta}
                out += [*opening, self._part(**end)]
            case ToolCallStart(id=id, name=name):
                out += self._close()
                out.append(self._part(type="tool-input-start", toolCallId=id, toolName=name))
            case ToolCallDelta(id=id, arguments=arguments):
                out.append(
                    self._part(type="tool-input-delta", toolCallId=id, inputTextDelta=arguments)
                )
            case ToolCallEnd(call=call):
                try:
                    parsed = json.loads(call.arguments or "{}")
                except ValueError:
                    # Cut short (finish `length`): the call stays "input-streaming" on the
                    # client, which is true: its input never became whole.
                    return out
                available: dict[str, Any] = {
                    "type": "tool-input-available",
                    "toolCallId": call.id,
                    "toolName": call.name,
                    "input": parsed,
                }
                if call.signature is not None:
                    signed = {"thoughtSignature": call.signature}
                    available["providerMetadata"] = {GOOGLE_KEY: signed}
                out.append(self._part(**available))
            case Finish(reason=reason, usage=usage, served_by=served_by):
                out += self._close()
                metadata = dict(self._metadata)
                if served_by:  # what answered: the provider asked for, or a fallback
                    metadata["provider"], _, metadata["model"] = served_by.partition("/")
                out += [
                    self._part(type="finish-step"),
                    self._part(
                        type="finish",
                        finishReason=_FINISH[reason],
                        messageMetadata={**metadata, "usage": _usage(usage)},
                    ),
                    DONE,
                ]
            case StreamError():
                out += self._close()
                out += [
                    self._part(type="error", errorText=chunk.message),
                    self._part(type="finish", finishReason="error"),
                    DONE,
                ]
        return out


class AISDKDialect(NativeDialect):
    """Errors before the stream are native JSON bodies: the transport throws with the body's
    text as the message, which then names the type and the field."""

    stream_headers: Mapping[str, str] = HEADERS
    keepalive: Event | None = None


DIALECT = AISDKDialect()
