"""The one chat request every client protocol parses into, and the checks they all share."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from streamfn.content import (
    Image,
    InvalidContent,
    Message,
    NamedTool,
    OutputFormat,
    ReasoningOption,
    Text,
    Tool,
    ToolChoice,
)

# OpenAI's rule for function names, which Anthropic's and Ollama's also accept.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may carry (settings: STREAMFN_MAX_IMAGES, ...)."""

    max_images: int
    max_image_bytes: int
    max_tokens_cap: int | None = None
    max_messages: int = 1000
    max_input_chars: int = 1_000_000


# Half of a UTF-16 surrogate pair on its own: JSON can carry it ("\ud800"), but it is not text,
# and every provider SDK fails encoding it. Refused up front with the field's name.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _strings(request: ChatRequest) -> Iterator[tuple[str, str]]:
    """Every string a provider is sent, with the field it came from."""
    yield "model", request.model
    for i, stop in enumerate(request.stop):
        yield f"stop.{i}", stop
    for i, message in enumerate(request.messages):
        for j, part in enumerate(message.content):
            if isinstance(part, Text):
                yield f"messages.{i}.content.{j}", part.text
        for k, call in enumerate(message.tool_calls):
            yield (
                f"messages.{i}.tool_calls.{k}",
                call.id + call.name + call.arguments + (call.signature or ""),
            )
        for k, block in enumerate(message.reasoning):
            yield f"messages.{i}.reasoning.{k}", block.text + (block.signature or "")
        if message.tool_call_id is not None:
            yield f"messages.{i}.tool_call_id", message.tool_call_id
    for i, tool in enumerate(request.tools):
        schema = json.dumps(tool.parameters, ensure_ascii=False)
        yield f"tools.{i}", tool.name + (tool.description or "") + schema


@dataclass(frozen=True, slots=True)
class NativeBody:
    """A client's request in its own protocol, kept beside its translation for a provider
    that speaks that protocol (Anthropic's Messages API, to the Anthropic provider; OpenAI's
    Responses API, to an OpenAI-compatible provider that serves it), which sends
    it on as it came, with the resolved model and max_tokens: so what `ChatRequest` does not
    model (cache_control, metadata, betas, fields newer than streamfn) still reaches the model.
    Every other provider, and every check, reads the translation. `headers` and `query` are the
    protocol's own ones to forward (`anthropic-beta`, `anthropic-version`, `?beta=true`)."""

    protocol: Literal["anthropic", "responses"]
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a provider streams from: the conversation with the provider's model resolved."""

    messages: tuple[Message, ...]
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningOption | None = None
    output_format: OutputFormat | None = None
    native: NativeBody | None = None  # the client's own body, for a provider of its protocol

    def capped(self, cap: int | None) -> ChatRequest:
        """This request with `max_tokens` bounded by `cap` (and set to it when unset)."""
        if cap is None:
            return self
        return replace(self, max_tokens=min(self.max_tokens or cap, cap))

    def sampling(
        self, *, max_tokens: str, temperature: str, top_p: str, stop: str
    ) -> dict[str, Any]:
        """The sampling options this request sets, under a provider's names for them."""
        out: dict[str, Any] = {}
        if self.max_tokens is not None:
            out[max_tokens] = self.max_tokens
        if self.temperature is not None:
            out[temperature] = self.temperature
        if self.top_p is not None:
            out[top_p] = self.top_p
        if self.stop:
            out[stop] = list(self.stop)
        return out

    def last_user_message(self) -> Message | None:
        for message in reversed(self.messages):
            if message.role == "user":
                return message
        return None

    def prompt_text(self) -> str:
        """Everything sent as text, for estimating input tokens when a provider reports none."""
        return "\n".join(_texts(self.messages))

    def call_name(self, call_id: str | None) -> str | None:
        """The name of the tool an earlier assistant turn called with id `call_id`."""
        for message in self.messages:
            for call in message.tool_calls:
                if call.id == call_id:
                    return call.name
        return None


def _texts(messages: tuple[Message, ...]) -> Iterator[str]:
    for message in messages:
        if message.content:
            yield message.text
        for block in message.reasoning:
            yield block.text
        for call in message.tool_calls:
            yield call.arguments


def check(request: ChatRequest, limits: Limits) -> None:
    """Raise `InvalidContent`, naming the field, for a request no provider could serve.

    Shape errors (wrong types, unknown fields) are the parsers' to report; this checks what
    spans fields: tool results against the calls they answer, tools against `tool_choice`,
    and how much is attached (each image's size is checked where it is parsed, by
    `content.image_from_url`, before its data is decoded). `param` paths follow the native body
    (`messages.2...`).
    """
    if len(request.messages) > limits.max_messages:
        raise InvalidContent(
            "messages",
            f"{len(request.messages)} messages; at most {limits.max_messages} "
            "(STREAMFN_MAX_MESSAGES)",
        )
    characters = 0
    for param, text in _strings(request):
        if _SURROGATE.search(text):
            raise InvalidContent(param, f"{param} holds a lone UTF-16 surrogate, which is not text")
        characters += len(text) if param != "model" else 0
    if characters > limits.max_input_chars:
        raise InvalidContent(
            "messages",
            f"the request holds {characters} characters; at most {limits.max_input_chars} "
            "(STREAMFN_MAX_INPUT_CHARS)",
        )
    images = 0
    calls: set[str] = set()
    for i, message in enumerate(request.messages):
        for j, image in enumerate(message.content):
            if not isinstance(image, Image):
                continue
            if message.role != "user":
                raise InvalidContent(f"messages.{i}.content.{j}", "only user messages carry images")
            images += 1
            if images > limits.max_images:
                raise InvalidContent(
                    f"messages.{i}.content.{j}",
                    f"a request may carry at most {limits.max_images} images (STREAMFN_MAX_IMAGES)",
                )
        if message.role == "assistant":
            for k, call in enumerate(message.tool_calls):
                if call.id in calls:
                    raise InvalidContent(
                        f"messages.{i}.tool_calls.{k}.id", f"tool call id {call.id!r} is repeated"
                    )
                calls.add(call.id)
                call.parsed_arguments(f"messages.{i}.tool_calls.{k}.arguments")
        elif message.tool_calls or message.reasoning:
            raise InvalidContent(
                f"messages.{i}", "only assistant messages carry tool calls or reasoning"
            )
        if message.role == "tool" and message.tool_call_id not in calls:
            raise InvalidContent(
                f"messages.{i}.tool_call_id",
                f"tool result {message.tool_call_id!r} answers no tool call of an earlier "
                "assistant message",
            )
    check_tools(request.tools, request.tool_choice)


def check_tools(tools: tuple[Tool, ...], choice: ToolChoice | None) -> None:
    if len(tools) > MAX_TOOLS:
        raise InvalidContent("tools", f"at most {MAX_TOOLS} tools")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not TOOL_NAME.match(tool.name):
            raise InvalidContent(
                f"tools.{i}.name", "a tool name is 1 to 64 letters, digits, '_' or '-'"
            )
        if tool.name in names:
            raise InvalidContent(f"tools.{i}.name", f"tool {tool.name!r} is defined twice")
        names.add(tool.name)
        check_schema(tool.parameters, f"tools.{i}.parameters")
    if isinstance(choice, NamedTool) and choice.name not in names:
        raise InvalidContent("tool_choice", f"tool_choice names {choice.name!r}, not in tools")
    if choice == "required" and not tools:
        raise InvalidContent("tool_choice", "tool_choice 'required' needs tools")


# The JSON Schema keywords whose values are schemas or maps of schemas, walked to find
# malformed nesting. Providers validate the full schema themselves (and answer 400 with their
# reason); this catches what would otherwise reach them as a confusing error or a 500.
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def check_schema(schema: Any, param: str, *, top: bool = True) -> None:
    """A tool's `parameters`: a JSON Schema object whose top level describes an object."""
    if isinstance(schema, bool) and not top:
        return
    if not isinstance(schema, dict):
        raise InvalidContent(param, f"{param} must be a JSON Schema object")
    if top and schema.get("type", "object") != "object":
        raise InvalidContent(param, f"{param} must describe an object (type: object)")
    kind = schema.get("type")
    if kind is not None and not isinstance(kind, str | list):
        raise InvalidContent(f"{param}.type", f"{param}.type must be a string or a list")
    for key in _SCHEMA_MAPS:
        if key in schema:
            members = schema[key]
            if not isinstance(members, dict):
                raise InvalidContent(f"{param}.{key}", f"{param}.{key} must be an object")
            for name, member in members.items():
                check_schema(member, f"{param}.{key}.{name}", top=False)
    for key in _SCHEMA_VALUES:
        if key in schema:
            check_schema(schema[key], f"{param}.{key}", top=False)
    for key in _SCHEMA_LISTS:
        if key in schema:
            if not isinstance(schema[key], list):
                raise InvalidContent(f"{param}.{key}", f"{param}.{key} must be a list")
            for n, member in enumerate(schema[key]):
                check_schema(member, f"{param}.{key}.{n}", top=False)
    required = schema.get("required")
    if required is not None and (
        not isinstance(required, list) or not all(isinstance(r, str) for r in required)
    ):
        raise InvalidContent(f"{param}.required", f"{param}.required must be a list of names")
