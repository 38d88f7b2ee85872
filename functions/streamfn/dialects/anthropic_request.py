"""Anthropic Messages requests (https://docs.claude.com/en/api/messages; the anthropic SDK's
`types/message_create_params.py`) as streamfn's `ChatRequest`.

The body is kept whole beside its translation (`NativeBody`), for the Anthropic provider, which
sends it on as it came: for it, what cannot be translated (documents, server tools, MCP
servers, `top_k`, structured output) is no obstacle, and is skipped in the translation only.
For every other provider the translation is all there is: what it cannot honour is refused with
a 400 naming the field, and what changes nothing about the answer is ignored (`metadata`,
`cache_control`, `context_management`, `service_tier`, thinking's `display`, and fields newer
than streamfn, as Anthropic adds them: Claude Code sends several).

Claude Code's requests are taken as they are: `max_tokens` above STREAMFN_MAX_TOKENS_CAP is
lowered to it (and a thinking budget below it), a `system`-role message among `messages` (sent
for a model it does not know) is a system message there, `thinking: {"type": "adaptive"}` with
`output_config.effort` is a reasoning effort, and tool schemas may carry `$schema`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamfn.content import (
    EFFORTS,
    Image,
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
from streamfn.controls import NO_CONTROLS, describe
from streamfn.dialects.native import Tokens
from streamfn.request import ChatRequest, Limits, NativeBody

# Names and ids can reach a response header, a log key or an upstream URL: no control
# characters (streamfn.controls).
Name = Annotated[str, Field(min_length=1, max_length=256, pattern=NO_CONTROLS)]
# The headers of a Messages request that are the protocol's own, forwarded to Anthropic.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


class _Open(BaseModel):
    """Anthropic's objects grow fields: what streamfn does not read is kept (and sent on to
    Anthropic), not refused. What it reads is of the type the schema says."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class MessageIn(_Open):
    # `system` is not Anthropic's, but Claude Code sends it (for a model it does not know).
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class CountBody(_Open):
    """The body of `POST /v1/messages/count_tokens`."""

    model: Name
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=1000)
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None

    def to_request(
        self,
        *,
        model: str,
        limits: Limits,
        native: bool,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        budgets: bool = True,
        efforts: frozenset[str] = frozenset(EFFORTS),
    ) -> ChatRequest:
        """The `ChatRequest`, with this body kept as its `native` one. `native`: the provider
        is Anthropic, which is sent the body itself, so what cannot be translated is skipped
        rather than refused. `budgets` and `efforts`: the reasoning options the provider takes
        (a thinking budget it cannot take becomes an effort, an effort it lacks the nearest
        lower one), so that Claude Code's requests are served by any provider."""
        if not native:
            self._refuse_what_cannot_be_honoured()
        asked, temperature, top_p, stop = self._sampling()
        cap = limits.max_tokens_cap
        max_tokens = cap if asked is None else asked if cap is None else min(asked, cap)
        messages = [*_system(self.system, native)]
        for i, message in enumerate(self.messages):
            messages += _turn(message, i, limits, native)
        tools = [t for t in (_tool(t, i, native) for i, t in enumerate(self.tools or ())) if t]
        choice, parallel = _tool_choice(self.tool_choice)
        reasoning = _reasoning(self.thinking, self.output_config, max_tokens)
        kept = {k: v for k, v in headers.items() if k in FORWARDED_HEADERS}
        return ChatRequest(
            messages=tuple(messages),
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=tuple(stop),
            tools=tuple(tools),
            tool_choice=choice,
            parallel_tool_calls=parallel,
            reasoning=reasoning.fit(budgets, efforts) if reasoning else None,
            output_format=_output_format(self.output_config),
            native=NativeBody("anthropic", self.model_dump(exclude_unset=True), kept, query),
        )

    def _sampling(self) -> tuple[int | None, float | None, float | None, list[str]]:
        """max_tokens, temperature, top_p and stop_sequences, which only a Messages body has
        (count_tokens counts the input alone)."""
        return None, None, None, []

    def _refuse_what_cannot_be_honoured(self) -> None:
        extra = self.model_extra or {}
        if extra.get("top_k") is not None:
            raise InvalidContent("top_k", "top_k is not supported by this provider")
        for name in ("mcp_servers", "container"):
            if extra.get(name):
                raise InvalidContent(name, f"{name} is Anthropic's own: not supported here")


class MessagesBody(CountBody):
    """The body of `POST /v1/messages`."""

    max_tokens: Tokens
    stream: bool = False
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = None
    temperature: Annotated[float | None, Field(ge=0, le=1)] = None
    top_p: Annotated[float | None, Field(ge=0, le=1)] = None
    metadata: dict[str, Any] | None = None

    def _sampling(self) -> tuple[int | None, float | None, float | None, list[str]]:
        return self.max_tokens, self.temperature, self.top_p, list(self.stop_sequences or ())


def _system(system: str | list[dict[str, Any]] | None, native: bool) -> Iterator[Message]:
    if isinstance(system, str):
        if system:
            yield Message.of("system", system)
        return
    texts = tuple(_texts(system or [], "system", native))
    if texts:
        yield Message("system", texts)


def _texts(blocks: list[dict[str, Any]], param: str, native: bool) -> Iterator[Text]:
    """The text blocks of a `system` (or a system-role message's content)."""
    for j, block in enumerate(blocks):
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            if block["text"]:
                yield Text(block["text"])
        elif not native:
            raise InvalidContent(f"{param}.{j}", f"{param}.{j}: only text blocks are supported")


def _turn(message: MessageIn, i: int, limits: Limits, native: bool) -> list[Message]:
    """One Messages turn as `ChatRequest` messages: a user turn's tool results are tool
    messages (first, as they answer the turn before), then its text and images."""
    at = f"messages.{i}.content"
    if isinstance(message.content, str):
        if not message.content and message.role != "assistant":
            raise InvalidContent(at, f"a {message.role} message needs content")
        return [Message.of(message.role, message.content)]
    if message.role == "system":
        texts = tuple(_texts(message.content, at, native))
        return [Message("system", texts)] if texts else []
    if message.role == "assistant":
        return [_assistant(message.content, at, native)]
    out: list[Message] = []
    parts: list[Part] = []
    for j, block in enumerate(message.content):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(Text(block["text"]))
        elif kind == "image":
            image = _image(block.get("source"), f"{at}.{j}.source", limits, native)
            if image is not None:
                parts.append(image)
        elif kind == "tool_result":
            result, images = _tool_result(block, f"{at}.{j}", limits, native)
            out.append(result)
            parts += images
        elif not native:
            raise InvalidContent(f"{at}.{j}", f"content block type {kind!r} is not supported")
    if parts:
        out.append(Message("user", tuple(parts)))
    if not out and not native:
        raise InvalidContent(at, "a user message needs content")
    return out


def _assistant(blocks: list[dict[str, Any]], at: str, native: bool) -> Message:
    parts: list[Part] = []
    calls: list[ToolCall] = []
    reasoning: list[Reasoning] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            if block["text"]:
                parts.append(Text(block["text"]))
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            signature = block.get("signature")
            signed = signature if isinstance(signature, str) and signature else None
            reasoning.append(Reasoning(block["thinking"], signed))
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            reasoning.append(Reasoning(redacted=block["data"]))
        elif kind == "tool_use":
            calls.append(_tool_use(block, f"{at}.{j}"))
        elif not native:
            raise InvalidContent(f"{at}.{j}", f"content block type {kind!r} is not supported")
    return Message("assistant", tuple(parts), tuple(calls), reasoning=tuple(reasoning))


def _tool_use(block: dict[str, Any], at: str) -> ToolCall:
    id, name, input = _id(block.get("id"), f"{at}.id"), block.get("name"), block.get("input", {})
    if not isinstance(name, str) or not name:
        raise InvalidContent(f"{at}.name", f"{at}.name must be the tool's name")
    if not isinstance(input, dict):
        raise InvalidContent(f"{at}.input", f"{at}.input must be an object")
    return ToolCall(id, name, json.dumps(input, ensure_ascii=False))


def _id(value: object, at: str) -> str:
    """A tool_use id read from a content block: it may reach a log line or an upstream."""
    if not isinstance(value, str) or not value:
        raise InvalidContent(at, f"{at} must be a tool_use id")
    if (why := describe(value)) is not None:
        raise InvalidContent(at, f"{at} {why}")
    return value


def _tool_result(
    block: dict[str, Any], at: str, limits: Limits, native: bool
) -> tuple[Message, list[Part]]:
    """A tool result, and its images: a tool message carries text only (as OpenAI's API has
    it), so they follow in the user message."""
    id = _id(block.get("tool_use_id"), f"{at}.tool_use_id")
    content = block.get("content", "")
    texts: list[str] = []
    images: list[Part] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "tool_reference" and isinstance(part.get("tool_name"), str):
                # Claude Code's ToolSearch loads a deferred tool so; every tool is loaded here.
                texts.append(f"[tool available: {part['tool_name']}]")
            elif kind == "image":
                image = _image(part.get("source"), f"{at}.content.{k}.source", limits, native)
                if image is not None:
                    images.append(image)
            elif not native:
                raise InvalidContent(
                    f"{at}.content.{k}", f"tool result block type {kind!r} is not supported"
                )
    else:
        raise InvalidContent(f"{at}.content", f"{at}.content must be a string or a list")
    return Message("tool", (Text("\n".join(texts)),), tool_call_id=id), images


def _image(source: Any, at: str, limits: Limits, native: bool) -> Image | None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise InvalidContent(at, f"{at} needs media_type and data")
        url = f"data:{media_type};base64,{data}"
        return image_from_url(url, param=f"{at}.data", max_bytes=limits.max_image_bytes)
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return image_from_url(source["url"], param=f"{at}.url", max_bytes=limits.max_image_bytes)
    if native:
        return None  # a file of Anthropic's Files API: Anthropic's own
    raise InvalidContent(f"{at}.type", f"image source type {kind!r} is not supported")


def _tool(tool: dict[str, Any], i: int, native: bool) -> Tool | None:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        # A server tool (web search, code execution, ...): Anthropic runs it, nobody else can.
        if native:
            return None
        raise InvalidContent(f"tools.{i}.type", f"tool type {kind!r} is Anthropic's own")
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str):
        raise InvalidContent(f"tools.{i}.name", "a tool needs a name")
    if not isinstance(schema, dict):
        raise InvalidContent(f"tools.{i}.input_schema", "a tool needs an input_schema object")
    description = tool.get("description")
    return Tool(name, description if isinstance(description, str) else None, schema)


def _tool_choice(choice: dict[str, Any] | None) -> tuple[ToolChoice | None, bool | None]:
    """`tool_choice` and `disable_parallel_tool_use` (as parallel_tool_calls)."""
    if choice is None:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return NamedTool(choice["name"]), parallel
    raise InvalidContent("tool_choice", "tool_choice.type is auto, any, tool (with name) or none")


def _reasoning(
    thinking: dict[str, Any] | None, output: dict[str, Any] | None, max_tokens: int | None
) -> ReasoningOption | None:
    """Extended thinking as a reasoning option: a budget (`enabled`), or an effort (`adaptive`,
    with `output_config.effort`; Anthropic's default effort is high)."""
    kind = (thinking or {}).get("type")
    if kind is None or kind == "disabled":
        return None
    if kind == "enabled":
        budget = (thinking or {}).get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise InvalidContent("thinking.budget_tokens", "budget_tokens must be an integer")
        if max_tokens is not None and budget >= max_tokens:
            budget = max(1, max_tokens - 1)  # max_tokens was lowered to the cap
        return ReasoningOption(budget_tokens=budget)
    if kind in ("adaptive", "between_tools"):
        effort = (output or {}).get("effort", "high")
        if effort not in EFFORTS:
            raise InvalidContent("output_config.effort", f"effort is one of {', '.join(EFFORTS)}")
        return ReasoningOption(effort=effort)
    raise InvalidContent("thinking.type", "thinking.type is enabled, adaptive or disabled")


def _output_format(config: dict[str, Any] | None) -> OutputFormat | None:
    """`output_config.format`, Anthropic's structured output: a JSON schema."""
    format = (config or {}).get("format")
    if format is None:
        return None
    param = "output_config.format"
    if not isinstance(format, dict) or format.get("type") != "json_schema":
        raise InvalidContent(f"{param}.type", f"{param} is {{type: json_schema, schema}}")
    schema = format.get("schema")
    if not isinstance(schema, dict):
        raise InvalidContent(f"{param}.schema", f"{param}.schema must be a JSON schema object")
    return OutputFormat("json_schema", param, schema)
