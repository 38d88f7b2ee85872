"""OpenAI Responses requests (https://platform.openai.com/docs/api-reference/responses/create;
openai-python's `types/responses/response_create_params.py` and `response_input_item_param.py`)
as streamfn's `ChatRequest`.

`input` is a string (one user message) or a list of items: messages (`input_text`,
`input_image`, and an assistant's `output_text` or `refusal`), `function_call`s and their
`function_call_output`s, `reasoning` items, and `item_reference`s to items of a stored
response. Items of one assistant turn (its reasoning, message and calls, which the API lists one
by one) are one assistant message of `ChatRequest`'s. A chained request's context (the stored
previous input and output, `previous_response_id`) comes before its input; references are
resolved by the route, which reads the store, before this module sees them.

A reasoning item's `encrypted_content` carries what a provider needs back on the next turn
(`Reasoning.signature`, or its redacted data behind `redacted:`), so that a conversation held by
the client (`store: false`, Codex's) keeps its signed reasoning.

Structured output (`text.format`: `json_schema`, `json_object`) goes to the providers that take
it (`Capabilities.output_formats`), and is a 400 naming the field elsewhere. What streamfn
cannot honour is refused with a 400 naming the field: `background`, `conversation`, `prompt`,
file inputs. Hosted tools (web search, file search, code interpreter, ...) are OpenAI's own:
no provider here runs them, so they are left out of what the model is offered (Codex offers
`web_search` with every request), and a `tool_choice` that forces one is refused. Custom
(free-form) tools are offered as functions of one string `input`, and their calls go back so
(`responses_custom`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field

from streamfn.content import (
    EFFORTS,
    InvalidContent,
    Message,
    NamedTool,
    OutputFormat,
    Part,
    Reasoning,
    ReasoningOption,
    Role,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    image_from_url,
)
from streamfn.controls import describe
from streamfn.dialects.native import MaxTokens
from streamfn.dialects.openai_request import Name, _Open
from streamfn.dialects.responses_custom import custom_call, custom_tool
from streamfn.request import ChatRequest, Limits, NativeBody

Item = dict[str, Any]

# Fields accepted and ignored: they do not change the answer, or are hints a gateway may drop.
IGNORED = (
    "user",
    "include",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "truncation",
    "stream_options",
    "max_tool_calls",
    "top_logprobs",
    "client_metadata",
)
# Fields refused unless they carry their default: streamfn cannot honour them.
REFUSED: dict[str, object] = {"background": False, "conversation": None, "prompt": None}
# Redacted reasoning in an `encrypted_content`: behind this tag (signatures, base64 or tagged
# with a provider's name, never begin so).
REDACTED = "redacted:"
# A call's signature (Gemini's `thoughtSignature` on a function call's part) in the
# `encrypted_content` of a reasoning item of its own after the call: `call:<call id>:<signature>`.
# A function_call item has no field a client keeps, and a client that keeps the conversation
# sends reasoning items back whole (Codex), as OpenAI's own reasoning state travels.
CALL_SIGNATURE = "call:"


class TextConfig(_Open):
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Open):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesBody(_Open):
    """The body of `POST /v1/responses`."""

    model: Name
    input: str | list[Item] = Field(default="", max_length=10_000)
    instructions: str | None = None
    previous_response_id: Name | None = None
    stream: bool = False
    store: bool = True
    tools: list[Item] | None = Field(default=None, max_length=512)
    tool_choice: str | Item | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: MaxTokens = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    top_p: Annotated[float | None, Field(gt=0, le=1)] = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)

    def items(self) -> list[Item]:
        """`input` as items (a string is one user message)."""
        if isinstance(self.input, str):
            return [{"type": "message", "role": "user", "content": self.input}]
        return list(self.input)

    def references(self) -> list[str]:
        """The ids of the stored items `input` refers to (`item_reference`)."""
        return [
            item["id"]
            for item in self.items()
            if item.get("type") == "item_reference" and isinstance(item.get("id"), str)
        ]

    def to_request(
        self,
        *,
        model: str,
        limits: Limits,
        items: list[Item],
        native: bool = False,
        budgets: bool = True,
        efforts: frozenset[str] = frozenset(EFFORTS),
    ) -> ChatRequest:
        """The `ChatRequest` of `items`: the chain's context, then this input with its
        references resolved (the route's `expand`). `native`: the provider serves the
        Responses API and is sent the body itself, so what cannot be translated is skipped in
        the translation rather than refused. `budgets` and `efforts`: the reasoning options the
        provider takes."""
        if not native:
            self._refuse_what_cannot_be_honoured()
        messages = [Message.of("system", self.instructions)] if self.instructions else []
        messages += messages_of(items, limits, native)
        if not any(m.role != "system" for m in messages):
            raise InvalidContent("input", "input holds no message")
        effort = self.reasoning.effort if self.reasoning else None
        reasoning = ReasoningOption(effort=effort) if effort and effort != "none" else None
        return ChatRequest(
            messages=tuple(messages),
            model=model,
            max_tokens=self.max_output_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            tools=tuple(self.function_tools(native)),
            tool_choice=self._tool_choice(native),
            parallel_tool_calls=self.parallel_tool_calls,
            reasoning=reasoning.fit(budgets, efforts) if reasoning else None,
            output_format=None if native else self._output_format(),
            native=NativeBody("responses", self.native_body(items)),
        ).capped(limits.max_tokens_cap)

    def native_body(self, items: list[Item]) -> dict[str, Any]:
        """This body as an upstream that serves the Responses API itself is sent it: its input
        the whole context (`items`: a chain is streamfn's to keep, as the ids in it are), and
        nothing stored there."""
        body = self.model_dump(exclude_unset=True, exclude={"previous_response_id"})
        return {**body, "input": items, "store": False}

    def function_tools(self, native: bool = False) -> Iterator[Tool]:
        """The function tools, a namespace's included (Codex groups its tools so); hosted tools
        are left out."""
        for i, tool in enumerate(self.tools or ()):
            kind = tool.get("type")
            if kind == "function":
                yield _function(tool, f"tools.{i}")
            elif kind == "namespace":
                members = tool.get("tools")
                if not isinstance(members, list):
                    raise InvalidContent(f"tools.{i}.tools", "a namespace needs a list of tools")
                for j, member in enumerate(members):
                    if isinstance(member, dict) and member.get("type", "function") == "function":
                        yield _function(member, f"tools.{i}.tools.{j}")
            elif kind == "custom" and not native:
                yield custom_tool(tool, f"tools.{i}")
            elif not isinstance(kind, str):
                raise InvalidContent(f"tools.{i}.type", "a tool needs a type")

    def _tool_choice(self, native: bool) -> ToolChoice | None:
        choice = self.tool_choice
        if choice is None or choice in ("auto", "none", "required"):
            return choice  # type: ignore[return-value]
        if isinstance(choice, dict) and choice.get("type") == "function":
            name = choice.get("name")
            if not isinstance(name, str):
                raise InvalidContent("tool_choice.name", "a function tool_choice needs a name")
            return NamedTool(name)
        if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            mode = choice.get("mode", "auto")
            return "required" if mode == "required" else "auto"
        if native:
            return None  # a hosted tool's: the provider's to honour
        raise InvalidContent(
            "tool_choice",
            "tool_choice is auto, none, required or a function: hosted tools are OpenAI's own",
        )

    def _output_format(self) -> OutputFormat | None:
        format = self.text.format if self.text else None
        return None if format is None else OutputFormat.parse(format, "text.format", flat=True)

    def _refuse_what_cannot_be_honoured(self) -> None:
        for name, value in (self.model_extra or {}).items():
            if name in IGNORED:
                continue
            if name not in REFUSED:
                raise InvalidContent(name, f"Unrecognized request argument supplied: {name}")
            if value is not None and value != REFUSED[name]:
                raise InvalidContent(name, f"{name} is not supported by streamfn")


def _function(tool: Item, at: str) -> Tool:
    name, parameters = tool.get("name"), tool.get("parameters")
    if not isinstance(name, str):
        raise InvalidContent(f"{at}.name", "a function tool needs a name")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise InvalidContent(f"{at}.parameters", f"{at}.parameters must be a JSON Schema object")
    description = tool.get("description")
    return Tool(name, description if isinstance(description, str) else None, parameters)


def messages_of(items: list[Item], limits: Limits, native: bool = False) -> list[Message]:
    """`items` as messages: an assistant turn's items (reasoning, its message, its calls) one
    assistant message, each call's output a tool message. `native`: items of other types (a
    hosted tool's call, a custom tool's) are skipped, for a provider sent them as they are."""
    out: list[Message] = []
    turn: _Turn | None = None
    for i, item in enumerate(items):
        at = f"input.{i}"
        kind = item.get("type", "message")
        role = item.get("role")
        if kind in _TURN_ITEMS or (kind == "message" and role == "assistant"):
            turn = turn or _Turn()
            turn.add(item, at)
            continue
        if turn is not None:
            out.append(turn.message())
            turn = None
        if kind == "message":
            if (message := _message(item, at, limits, native)) is not None:
                out.append(message)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out.append(_output(item, at))
        elif kind == "item_reference":
            raise InvalidContent(f"{at}.id", "an item_reference must name a stored item")
        elif not native:
            raise InvalidContent(f"{at}.type", f"input item type {kind!r} is not supported")
    if turn is not None:
        out.append(turn.message())
    return out


# The items of an assistant turn, beside its message.
_TURN_ITEMS = ("reasoning", "function_call", "custom_tool_call")


class _Turn:
    """An assistant turn's items, gathered into one message."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.calls: list[ToolCall] = []
        self.reasoning: list[Reasoning] = []
        self.signatures: dict[str, str] = {}  # of calls, by call id

    def add(self, item: Item, at: str) -> None:
        kind = item.get("type", "message")
        if kind == "reasoning":
            encrypted = item.get("encrypted_content")
            if isinstance(encrypted, str) and encrypted.startswith(CALL_SIGNATURE):
                call, _, signature = encrypted.removeprefix(CALL_SIGNATURE).rpartition(":")
                self.signatures[call] = signature
            else:
                self.reasoning.append(_reasoning(item, at))
        elif kind == "function_call":
            name, arguments = item.get("name"), item.get("arguments", "{}")
            if not isinstance(name, str) or not isinstance(arguments, str):
                raise InvalidContent(at, f"{at}: a function_call needs a name and arguments")
            self.calls.append(ToolCall(_id(item.get("call_id"), f"{at}.call_id"), name, arguments))
        elif kind == "custom_tool_call":
            self.calls.append(custom_call(item, _id(item.get("call_id"), f"{at}.call_id"), at))
        else:
            self.parts += _texts(item.get("content"), f"{at}.content", ("output_text", "refusal"))

    def message(self) -> Message:
        calls = tuple(
            replace(c, signature=self.signatures[c.id]) if c.id in self.signatures else c
            for c in self.calls
        )
        return Message("assistant", tuple(self.parts), calls, reasoning=tuple(self.reasoning))


_ROLES: Mapping[str, Role] = {"user": "user", "system": "system", "developer": "system"}


def _message(item: Item, at: str, limits: Limits, native: bool) -> Message | None:
    role = _ROLES.get(item.get("role", ""))
    if role is None:
        raise InvalidContent(f"{at}.role", "role is user, assistant, system or developer")
    content = item.get("content")
    if role == "system":
        parts: list[Part] = list(_texts(content, f"{at}.content", ("input_text",)))
        return Message("system", tuple(parts))
    parts = []
    if isinstance(content, str):
        parts.append(Text(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "input_text" and isinstance(part.get("text"), str):
                parts.append(Text(part["text"]))
            elif kind == "input_image":
                parts.append(_image(part, f"{at}.content.{j}", limits, native))
            elif not native:  # a file: the provider's, when it is sent the body itself
                raise InvalidContent(
                    f"{at}.content.{j}", f"content part type {kind!r} is not supported"
                )
    else:
        raise InvalidContent(f"{at}.content", f"{at}.content must be a string or a list")
    if native and not parts:
        return None
    if not parts or all(isinstance(p, Text) and not p.text for p in parts):
        raise InvalidContent(f"{at}.content", f"a {role} message needs content")
    return Message(role, tuple(parts))


def _texts(content: object, at: str, kinds: tuple[str, ...]) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidContent(at, f"{at} must be a string or a list")
    out: list[Part] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = "refusal" if kind == "refusal" else "text"
        if kind in kinds and isinstance(part, dict) and isinstance(part.get(key), str):
            if part[key]:
                out.append(Text(part[key]))
        else:
            raise InvalidContent(f"{at}.{j}", f"content part type {kind!r} is not supported here")
    return out


def _image(part: Item, at: str, limits: Limits, native: bool) -> Part:
    url = part.get("image_url")
    if not isinstance(url, str) and native:
        return Text("")  # by file_id: the provider's own
    if not isinstance(url, str):
        if part.get("file_id") is not None:
            raise InvalidContent(f"{at}.file_id", "images by file_id are not supported: send a URL")
        raise InvalidContent(f"{at}.image_url", "input_image needs an image_url")
    return image_from_url(url, param=f"{at}.image_url", max_bytes=limits.max_image_bytes)


def _output(item: Item, at: str) -> Message:
    call = _id(item.get("call_id"), f"{at}.call_id")
    output = item.get("output")
    if isinstance(output, list):  # parts: their text
        texts = [
            p["text"] for p in output if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
        output = "\n".join(texts)
    if not isinstance(output, str):
        raise InvalidContent(f"{at}.output", f"{at}.output must be a string")
    return Message("tool", (Text(output),), tool_call_id=call)


def _reasoning(item: Item, at: str) -> Reasoning:
    texts = [
        s["text"]
        for key in ("summary", "content")
        for s in item.get(key) or ()
        if isinstance(s, dict) and isinstance(s.get("text"), str)
    ]
    encrypted = item.get("encrypted_content")
    if encrypted is not None and not isinstance(encrypted, str):
        raise InvalidContent(f"{at}.encrypted_content", "encrypted_content must be a string")
    if encrypted and encrypted.startswith(REDACTED):
        return Reasoning(redacted=encrypted.removeprefix(REDACTED))
    return Reasoning("".join(texts), encrypted or None)


def encrypted_content(block: Reasoning) -> str | None:
    """What carries `block` through a client that keeps the conversation (the inverse of
    reading a reasoning item's `encrypted_content`)."""
    if block.redacted is not None:
        return REDACTED + block.redacted
    return block.signature


def _id(value: object, at: str) -> str:
    """A call id from an item: it may reach a log line or an upstream."""
    if not isinstance(value, str) or not value:
        raise InvalidContent(at, f"{at} must be a call id")
    if (why := describe(value)) is not None:
        raise InvalidContent(at, f"{at} {why}")
    return value


def expand(items: list[Item], found: Mapping[str, Item]) -> list[Item]:
    """`items` with each `item_reference` replaced by the stored item it names (`found`, by
    id; the route answers 404 for one it does not find)."""
    return [
        found[item["id"]]
        if item.get("type") == "item_reference" and item.get("id") in found
        else item
        for item in items
    ]
