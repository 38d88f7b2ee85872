"""OpenAI Chat Completions requests (https://platform.openai.com/docs/api-reference/chat/create)
as streamfn's `ChatRequest`: fields streamfn cannot honour are refused with a 400 whose `param`
names them, as OpenAI refuses what it does not know; fields that change nothing about the
answer are ignored (`IGNORED`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamfn.content import (
    InvalidContent,
    Message,
    NamedTool,
    OutputFormat,
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
from streamfn.dialects.native import Integer, MaxTokens
from streamfn.request import ChatRequest, Limits

# Fields accepted and ignored: they do not change the answer, or are hints a gateway may drop.
IGNORED = (
    "user",
    "metadata",
    "store",
    "service_tier",
    "seed",
    "prompt_cache_key",
    "safety_identifier",
    "verbosity",
)
# Fields refused unless they carry their default: streamfn cannot honour them.
REFUSED = {
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias": None,
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "audio": None,
    "modalities": ["text"],
    "prediction": None,
    "web_search_options": None,
    "functions": None,
    "function_call": None,
}


class _Open(BaseModel):
    """OpenAI's objects grow fields; what streamfn does not read is let through, not refused.
    What it reads is of the type the schema says (`temperature: false` is not a number)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


# Names and ids can reach a response header, a log key or an upstream URL: no control
# characters (streamfn.controls).
Name = Annotated[str, Field(min_length=1, max_length=256, pattern=NO_CONTROLS)]
ToolName = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROLS)]


class FunctionCallIn(_Open):
    name: ToolName
    arguments: str = "{}"


class ToolCallIn(_Open):
    id: Name
    type: Literal["function"] = "function"
    function: FunctionCallIn
    # Gemini's OpenAI-compatible API (https://ai.google.dev/gemini-api/docs/openai) carries a
    # call's thought signature here, as `google.thought_signature`, and so does streamfn.
    extra_content: dict[str, Any] | None = None

    def signature(self) -> str | None:
        google = (self.extra_content or {}).get("google")
        signature = google.get("thought_signature") if isinstance(google, dict) else None
        return signature if isinstance(signature, str) and signature else None


class MessageIn(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=128)
    tool_call_id: Name | None = None
    reasoning_content: str | None = None  # DeepSeek's field, which we stream too
    reasoning: str | None = None  # vLLM's
    reasoning_details: list[dict[str, Any]] | None = None  # OpenRouter's: signed, encrypted


class FunctionIn(_Open):
    name: ToolName
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolIn(_Open):
    type: Literal["function"]
    function: FunctionIn


class NamedFunction(_Open):
    name: ToolName


class ToolChoiceIn(_Open):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Open):
    include_usage: bool = False


class CompletionBody(_Open):
    """The body of `POST /v1/chat/completions`."""

    model: Name
    models: list[Name] | None = Field(
        default=None,
        max_length=5,
        description="Fallbacks, as OpenRouter takes them: models tried in order if `model` "
        "fails before its first token.",
    )
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens = None
    max_completion_tokens: MaxTokens = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    top_p: Annotated[float | None, Field(gt=0, le=1)] = None
    stop: str | list[Annotated[str, Field(min_length=1)]] | None = None
    n: Integer | None = None
    tools: list[ToolIn] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = (
        None
    )
    response_format: dict[str, Any] | None = Field(
        default=None,
        description="Structured output: {type: text}, {type: json_object} or {type: "
        "json_schema, json_schema: {name, schema, strict}}, where the provider takes it.",
    )

    def to_request(self, *, model: str, limits: Limits) -> ChatRequest:
        """The `ChatRequest`; `InvalidContent` names the field streamfn cannot honour."""
        self._refuse_what_cannot_be_honoured()
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if len(stop) > 4:
            raise InvalidContent("stop", "at most 4 stop sequences")
        effort = self.reasoning_effort
        choice: ToolChoice | None = (
            NamedTool(self.tool_choice.function.name)
            if isinstance(self.tool_choice, ToolChoiceIn)
            else self.tool_choice
        )
        return ChatRequest(
            messages=tuple(_message(m, i, limits) for i, m in enumerate(self.messages)),
            model=model,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(stop),
            tools=tuple(
                Tool(t.function.name, t.function.description, t.function.parameters)
                for t in self.tools or ()
            ),
            tool_choice=choice,
            parallel_tool_calls=self.parallel_tool_calls,
            reasoning=ReasoningOption(effort=effort) if effort and effort != "none" else None,
            output_format=None
            if self.response_format is None
            else OutputFormat.parse(self.response_format, "response_format", flat=False),
        ).capped(limits.max_tokens_cap)

    def _refuse_what_cannot_be_honoured(self) -> None:
        if self.n not in (None, 1):
            raise InvalidContent("n", "n must be 1: streamfn generates one choice")
        for name, value in (self.model_extra or {}).items():
            if name in IGNORED:
                continue
            if name not in REFUSED:
                raise InvalidContent(name, f"Unrecognized request argument supplied: {name}")
            if value is not None and value != REFUSED[name]:
                raise InvalidContent(name, f"{name} is not supported by streamfn")


def _message(message: MessageIn, i: int, limits: Limits) -> Message:
    role = message.role
    if role == "function":
        raise InvalidContent(f"messages.{i}.role", "function messages are not supported: use tool")
    if role == "developer":
        role = "system"
    content = _content(message.content, f"messages.{i}.content", limits)
    if role == "tool" and message.tool_call_id is None:
        raise InvalidContent(f"messages.{i}.tool_call_id", "a tool message needs tool_call_id")
    if role != "assistant" and not content:
        raise InvalidContent(f"messages.{i}.content", f"a {role} message needs content")
    return Message(
        role=role,
        content=content,
        tool_calls=tuple(
            ToolCall(c.id, c.function.name, c.function.arguments, c.signature())
            for c in message.tool_calls or ()
        ),
        tool_call_id=message.tool_call_id if role == "tool" else None,
        reasoning=_reasoning(message) if role == "assistant" else (),
    )


def _content(
    content: str | list[dict[str, Any]] | None, param: str, limits: Limits
) -> tuple[Part, ...]:
    if content is None or content == "":
        return ()
    if isinstance(content, str):
        return (Text(content),)
    parts: list[Part] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            parts.append(Text(part[kind]))
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            url = part["image_url"].get("url")
            if not isinstance(url, str):
                raise InvalidContent(f"{param}.{j}.image_url.url", "image_url needs a url")
            parts.append(
                image_from_url(
                    url, param=f"{param}.{j}.image_url.url", max_bytes=limits.max_image_bytes
                )
            )
        else:
            raise InvalidContent(f"{param}.{j}", f"content part type {kind!r} is not supported")
    return tuple(parts)


def _reasoning(message: MessageIn) -> tuple[Reasoning, ...]:
    """Reasoning sent back: OpenRouter's `reasoning_details` (signed and encrypted blocks),
    else DeepSeek's `reasoning_content` or vLLM's `reasoning` as one plain block."""
    if message.reasoning_details:
        blocks: list[Reasoning] = []
        for detail in message.reasoning_details:
            if detail.get("type") == "reasoning.encrypted" and isinstance(detail.get("data"), str):
                blocks.append(Reasoning(redacted=detail["data"]))
            elif detail.get("type") == "reasoning.text":
                blocks.append(
                    Reasoning(str(detail.get("text") or ""), detail.get("signature") or None)
                )
        return tuple(blocks)
    text = message.reasoning_content or message.reasoning
    return (Reasoning(text),) if text else ()
