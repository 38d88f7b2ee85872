"""streamfn's own protocol: `POST /chat/stream` (and `GET` for `EventSource`).

Events, compatible with the seed design's JavaScript client (which listens for `token`,
`usage`, `done` and `error` only, and keeps working):

- `token`: data is the raw text of one delta
- `reasoning`: data is the raw text of one delta of the model's reasoning
- `reasoning_done`: JSON, a whole reasoning block, in the form a request's assistant message
  takes it back (`{"type": "thinking", "text", "signature"}` or
  `{"type": "redacted_thinking", "data"}`)
- `tool_call_start`: JSON `{"id", "name"}`, a tool call begins
- `tool_call_delta`: JSON `{"id", "arguments"}`, a fragment of its JSON arguments
- `tool_call`: JSON `{"id", "name", "arguments"}` (and `signature`, Gemini's thought signature,
  when the call has one), the whole call, in the form a request's assistant message takes it
  back
- `usage`: JSON `{"input_tokens", "output_tokens", "estimated", "reasoning_tokens",
  "cached_input_tokens", "cache_creation_input_tokens", "cost_usd", "provider", "model"}`:
  reasoning is part of the output, cache reads and writes part of the input, each null where
  the provider does not say; `cost_usd` what the request cost in USD (`streamfn.prices`), null
  where the model's price is not known
- `done`: data is the finish reason (stop, length, tool_calls, content_filter)
- `error`: JSON `{"type", "message", "retryable"}`; nothing follows it

A successful stream is deltas, `usage`, `done`; a failed one is deltas, `error`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, assert_never

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from starlette.responses import Response

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
from streamfn.content import (
    Effort,
    InvalidContent,
    Message,
    NamedTool,
    Part,
    Reasoning,
    ReasoningOption,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    image_from_url,
)
from streamfn.controls import NO_CONTROLS
from streamfn.dialects import Event, dumps
from streamfn.errors import error_body, error_response
from streamfn.prices import cost_of
from streamfn.request import ChatRequest, Limits
from streamfn.resume import STREAM_ID


def _integral(value: object) -> object:
    """An integer as JSON Schema counts them: 5.0 is 5, which strict mode refuses (and `true`
    is none, which lax mode takes)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(_integral)]

# Field constraints shared by the POST body and the GET query, so both reject the same input.
# Names and ids can reach a response header, a log key or an upstream URL: no control
# characters (streamfn.controls).
ProviderName = Annotated[str | None, Field(min_length=1, max_length=64, pattern=NO_CONTROLS)]
ModelName = Annotated[str | None, Field(min_length=1, max_length=256, pattern=NO_CONTROLS)]
FallbackName = Annotated[str, Field(min_length=1, max_length=256, pattern=NO_CONTROLS)]
ToolName = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROLS)]
# The bounds before the validator, which would otherwise hide them from the JSON Schema.
Tokens = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(_integral)]
MaxTokens = Tokens | None
Temperature = Annotated[float | None, Field(ge=0, le=2)]
TopP = Annotated[float | None, Field(gt=0, le=1)]
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=NO_CONTROLS)]


StreamId = Annotated[
    str | None,
    Field(
        default=None,
        pattern=STREAM_ID,
        description="The id to give this stream (8 to 128 letters, digits, - and _; a UUID is "
        "best), so that it can be resumed even before its first event has arrived; by "
        "default it gets the request's id.",
    ),
]


class _Strict(BaseModel):
    """Unknown fields are rejected, so that a typo is an error, not a silent no-op; and values
    are of the type the schema says (`temperature: false`, or `max_tokens: "5"`, is not a
    number)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    type: Literal["image"]
    url: str = Field(description="An https: URL, or a data: URL with base64 image data.")


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ToolCallIn(_Strict):
    id: Id
    name: ToolName
    arguments: str = Field(default="{}", description="The arguments as a JSON text.")
    signature: str | None = Field(
        default=None,
        description="The call's signature, as its tool_call event had it (Gemini's thought "
        "signature, which Gemini wants back with the call).",
    )

    @field_validator("arguments", mode="before")
    @classmethod
    def _object_as_text(cls, value: object) -> object:
        # An object is accepted too, and kept as the JSON text providers are sent.
        return json.dumps(value) if isinstance(value, dict) else value


class ThinkingIn(_Strict):
    type: Literal["thinking"]
    text: str
    signature: str | None = None


class RedactedThinkingIn(_Strict):
    type: Literal["redacted_thinking"]
    data: str = Field(min_length=1)


ReasoningIn = Annotated[ThinkingIn | RedactedThinkingIn, Field(discriminator="type")]


class MessageIn(_Strict):
    """One turn of the conversation."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[ContentPart] = ""
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=128)
    tool_call_id: Id | None = None
    reasoning: list[ReasoningIn] | None = Field(default=None, max_length=128)

    def check_role(self, i: int) -> None:
        """`InvalidContent` (a 400 naming the field) for a field this message's role does not
        take, or lacks. The schema does not say which fields go with which role: a body of the
        schema that mixes them is content that cannot be used (400), not a malformed one."""
        at = f"messages.{i}"
        if self.role == "tool" and self.tool_call_id is None:
            raise InvalidContent(f"{at}.tool_call_id", "a tool message needs tool_call_id")
        if self.role != "tool" and self.tool_call_id is not None:
            raise InvalidContent(f"{at}.tool_call_id", "only tool messages carry tool_call_id")
        for name in ("tool_calls", "reasoning"):
            if self.role != "assistant" and getattr(self, name):
                raise InvalidContent(f"{at}.{name}", f"only assistant messages carry {name}")
        if self.role != "assistant" and self.content in ("", []):
            raise InvalidContent(f"{at}.content", f"a {self.role} message needs content")


class ToolIn(_Strict):
    name: ToolName
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON Schema describing an object.",
    )


class NamedToolIn(_Strict):
    name: ToolName


class ReasoningOptionIn(_Strict):
    """How much the model reasons: `effort` or `budget_tokens`, one of them."""

    effort: Effort | None = None
    budget_tokens: Tokens | None = None


class ChatBody(_Strict):
    """`POST /chat/stream`."""

    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    provider: ProviderName = None
    model: ModelName = None
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None
    stop: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, max_length=4)
    tools: list[ToolIn] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolIn | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningOptionIn | None = None
    fallbacks: list[FallbackName] = Field(
        default=[],
        max_length=5,
        description="provider/model alternatives tried in order if this one fails before its "
        "first token (replacing STREAMFN_FALLBACKS for this request)",
    )
    stream_id: StreamId = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: object) -> object:
        # OpenAI accepts a single string as well as a list.
        return [value] if isinstance(value, str) else value

    def to_request(self, *, model: str, limits: Limits) -> ChatRequest:
        """The `ChatRequest`; `InvalidContent` names the field of content that cannot be used."""
        return ChatRequest(
            messages=tuple(_message(m, i, limits) for i, m in enumerate(self.messages)),
            model=model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(self.stop or ()),
            **tool_options(self.tools, self.tool_choice, self.reasoning, self.parallel_tool_calls),
        ).capped(limits.max_tokens_cap)


def tool_options(
    tools: list[ToolIn] | None,
    tool_choice: Literal["auto", "none", "required"] | NamedToolIn | None,
    reasoning: ReasoningOptionIn | None,
    parallel_tool_calls: bool | None = None,
) -> dict[str, Any]:
    """`ChatRequest`'s tool and reasoning fields from the native forms (which other protocols'
    bodies reuse as extra fields)."""
    choice: ToolChoice | None = (
        NamedTool(tool_choice.name) if isinstance(tool_choice, NamedToolIn) else tool_choice
    )
    if reasoning is not None and (reasoning.effort is None) == (reasoning.budget_tokens is None):
        raise InvalidContent("reasoning", "give effort or budget_tokens, one of them")
    return {
        "tools": tuple(Tool(t.name, t.description, t.parameters) for t in tools or ()),
        "tool_choice": choice,
        "parallel_tool_calls": parallel_tool_calls,
        "reasoning": ReasoningOption(reasoning.effort, reasoning.budget_tokens)
        if reasoning
        else None,
    }


def _message(message: MessageIn, i: int, limits: Limits) -> Message:
    message.check_role(i)
    content: tuple[Part, ...]
    if isinstance(message.content, str):
        content = (Text(message.content),) if message.content else ()
    else:
        content = tuple(
            Text(part.text)
            if isinstance(part, TextPart)
            else image_from_url(
                part.url, param=f"messages.{i}.content.{j}.url", max_bytes=limits.max_image_bytes
            )
            for j, part in enumerate(message.content)
        )
    return Message(
        role=message.role,
        content=content,
        tool_calls=tuple(
            ToolCall(c.id, c.name, c.arguments, c.signature) for c in message.tool_calls or ()
        ),
        tool_call_id=message.tool_call_id,
        reasoning=tuple(
            Reasoning(text=r.text, signature=r.signature)
            if isinstance(r, ThinkingIn)
            else Reasoning(redacted=r.data)
            for r in message.reasoning or ()
        ),
    )


class ChatQuery(_Strict):
    """`GET /chat/stream`, for `EventSource`, which cannot POST: one user message."""

    # A query string is text: its numbers are read from it.
    model_config = ConfigDict(strict=False)

    prompt: str = Field(min_length=1)
    system: str | None = None
    provider: ProviderName = None
    model: ModelName = None
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None
    reasoning_effort: Effort | None = None
    token: str | None = Field(
        default=None, description="A stream token (POST /chat/stream/token) when auth is on."
    )
    stream_id: StreamId = None

    def to_body(self) -> ChatBody:
        messages = [MessageIn(role="user", content=self.prompt)]
        if self.system:
            messages.insert(0, MessageIn(role="system", content=self.system))
        return ChatBody(
            messages=messages,
            provider=self.provider,
            model=self.model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            reasoning=ReasoningOptionIn(effort=self.reasoning_effort)
            if self.reasoning_effort
            else None,
            stream_id=self.stream_id,
        )


class TokenBody(ChatQuery):
    """`POST /chat/stream/token`: the fields of `GET /chat/stream` as JSON, as strictly typed as
    any body."""

    model_config = ConfigDict(strict=True)


class NativeDialect:
    """Errors as `{"error": {"type", "message", "retryable", "param"?}}`."""

    stream_headers: Mapping[str, str] = {}
    keepalive: Event | None = None

    def error(
        self,
        status: int,
        type: str,
        message: str,
        *,
        param: str | None = None,
        retryable: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return error_response(
            status, type, message, param=param, retryable=retryable, headers=headers
        )


DIALECT = NativeDialect()


def reasoning_block(block: Reasoning) -> dict[str, object]:
    """A reasoning block as a native request's assistant message carries it back."""
    if block.redacted is not None:
        return {"type": "redacted_thinking", "data": block.redacted}
    return {"type": "thinking", "text": block.text, "signature": block.signature}


def events(chunk: StreamChunk) -> tuple[Event, ...]:
    """The native events of one chunk."""
    match chunk:
        case TextDelta(text=text):
            return (Event("token", text),)
        case ReasoningDelta(text=text):
            return (Event("reasoning", text),)
        case ReasoningEnd(block=block):
            return (Event("reasoning_done", dumps(reasoning_block(block))),)
        case ToolCallStart(id=id, name=name):
            return (Event("tool_call_start", dumps({"id": id, "name": name})),)
        case ToolCallDelta(id=id, arguments=arguments):
            return (Event("tool_call_delta", dumps({"id": id, "arguments": arguments})),)
        case ToolCallEnd(call=call):
            body = {"id": call.id, "name": call.name, "arguments": call.arguments}
            if call.signature is not None:
                body["signature"] = call.signature
            return (Event("tool_call", dumps(body)),)
        case Finish(reason=reason, usage=usage, served_by=served_by):
            provider, _, model = (served_by or "").partition("/")
            return (
                Event(
                    "usage",
                    dumps(
                        {
                            "input_tokens": usage.input_tokens,
                            "output_tokens": usage.output_tokens,
                            "estimated": usage.estimated,
                            "reasoning_tokens": usage.reasoning_tokens,
                            "cached_input_tokens": usage.cached_input_tokens,
                            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                            "cost_usd": cost_of(usage),
                            # What answered: the provider asked for, or a fallback.
                            "provider": provider or None,
                            "model": model or None,
                        }
                    ),
                ),
                Event("done", reason),
            )
        case StreamError():
            return (Event("error", dumps(error_body(chunk))),)
        case _:
            assert_never(chunk)
