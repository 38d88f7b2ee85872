"""`anthropic`: Messages streaming with the official SDK.

Wire format (https://docs.anthropic.com/en/api/messages-streaming): `message_start` (input
usage), then per content block `content_block_start`, `content_block_delta`s,
`content_block_stop`; `message_delta` (stop reason, cumulative usage, possibly more than once),
`message_stop`; `ping` anywhere; an `error` event may replace the rest of the stream.
Blocks: `text` (`text_delta`), `thinking` (`thinking_delta`s, then one `signature_delta` just
before its stop), `redacted_thinking` (its `data` in the start event, no deltas), `tool_use`
(`input_json_delta` fragments of the input's JSON text; at `max_tokens` that text may be cut
short, and is passed on as it is, with finish reason `length`).

`temperature` and `top_p` are not sent: API version 2026-10-21, which SDK 2.x speaks, rejects
every sampling parameter with a 400, and the SDK no longer has them.

A request that came in Anthropic's own protocol (`POST /v1/messages`) is not translated: its
body is sent on as it came, with the client's `anthropic-version` and `anthropic-beta`
(`anthropic_native`); its count_tokens too.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import anthropic
import httpx2
from anthropic import AsyncAnthropic, omit
from anthropic.types import (
    MessageParam,
    OutputConfigParam,
    ThinkingConfigParam,
    ToolChoiceParam,
    ToolParam,
)

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
from streamfn.content import NamedTool, Part, Reasoning, Text, Tool, ToolCall
from streamfn.providers import upstream
from streamfn.providers.anthropic_native import anthropic_body
from streamfn.providers.pool import ssl_context, streaming_pool
from streamfn.request import ChatRequest, NativeBody

NAME = "anthropic"

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The HTTP status each error type has when it is a response rather than an `error` event
# (https://docs.anthropic.com/en/api/errors).
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicProvider:
    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        default_max_tokens: int,
        total_timeout_s: float,
        connect_timeout_s: float,
        max_retries: int,
        max_connections: int = 10000,
    ) -> None:
        self._api_key = api_key
        self._default_max_tokens = default_max_tokens
        self._client = AsyncAnthropic(
            api_key=api_key or "unused",
            base_url=base_url,
            max_retries=max_retries,
            timeout=anthropic.Timeout(total_timeout_s, connect=connect_timeout_s),
            http_client=streaming_pool(
                anthropic.DefaultAsyncHttpxClient(
                    verify=ssl_context(),
                    limits=httpx2.Limits(
                        max_connections=max_connections, max_keepalive_connections=100
                    ),
                )
            ),
        )
        # The SDK imports its resources (and their many types) on first access: here, in the
        # worker thread that builds providers, not on the first request.
        self._messages = self._client.messages

    def _error(self, exc: Exception) -> StreamChunk:
        """The one place Anthropic SDK and transport exceptions become `StreamError`s."""
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return upstream.timed_out(NAME)
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            return upstream.unreachable(NAME, "the connection failed or broke")
        if isinstance(exc, anthropic.APIStatusError):
            error = exc.body.get("error") if isinstance(exc.body, dict) else None
            error = error if isinstance(error, dict) else {}
            detail = upstream.redact(
                str(error.get("message") or exc.api_message or ""), [self._api_key]
            )
            kind = str(error.get("type") or exc.type or "")
            if exc.status_code < 400:  # an `error` event after the 200
                status = _STATUS_OF_TYPE.get(kind, 500)
                return upstream.error_for_status(NAME, status, detail, reported=kind or "an error")
            return upstream.error_for_status(
                NAME,
                exc.status_code,
                detail,
                retry_after_s=upstream.retry_after(exc.response.headers),
            )
        return upstream.malformed(NAME, f"{type(exc).__name__}: {str(exc)[:200]}")

    def _create(self, request: ChatRequest) -> dict[str, Any]:
        """`messages.create`'s arguments: the client's own body when it spoke Anthropic's
        protocol (`anthropic_native`), else the translation of `request`."""
        native = anthropic_body(request)
        if native is not None:
            return _passed_on(native)
        max_tokens = request.max_tokens or self._default_max_tokens
        option = request.reasoning
        thinking: dict[str, Any] | None = None
        effort: dict[str, Any] | None = None
        if option is not None and option.budget_tokens is not None:
            thinking = {"type": "enabled", "budget_tokens": option.budget_tokens}
            if request.max_tokens is None:  # room for the answer beyond the thinking budget
                max_tokens = option.budget_tokens + self._default_max_tokens
        elif option is not None and option.effort is not None:
            thinking, effort = {"type": "adaptive"}, {"effort": option.effort}
        if (wanted := request.output_format) is not None:  # a json_schema (its capabilities)
            effort = {**(effort or {}), "format": {"type": "json_schema", "schema": wanted.schema}}
        return {
            **_input(request),
            "max_tokens": max_tokens,
            "stop_sequences": list(request.stop) or omit,
            "thinking": cast("ThinkingConfigParam", thinking) if thinking else omit,
            "output_config": cast("OutputConfigParam", effort) if effort else omit,
            "stream": True,
        }

    async def count_tokens(self, request: ChatRequest) -> int | StreamError:
        """Anthropic's own count of `request`'s input (`POST /v1/messages/count_tokens`)."""
        native = anthropic_body(request, count=True)
        arguments = _passed_on(native) if native is not None else _input(request)
        arguments.pop("max_tokens", None)
        arguments.pop("stream", None)
        try:
            counted = await self._messages.count_tokens(**arguments)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            chunk = self._error(exc)
            assert isinstance(chunk, StreamError)
            return chunk
        return counted.input_tokens

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        try:
            response = await self._messages.create(**self._create(request))
        except anthropic.AnthropicError as exc:
            yield self._error(exc)
            return
        usage = _Usage()
        finish: FinishReason | None = None
        stopped = False
        blocks: dict[int, _Block] = {}
        async with response:  # closes the HTTP response however this block is left
            try:
                async for event in response:
                    if event.type == "message_start":
                        usage.update(event.message.usage)
                    elif event.type == "content_block_start":
                        for chunk in _start(event.index, event.content_block, blocks):
                            yield chunk
                    elif event.type == "content_block_delta":
                        for chunk in _delta(event.index, event.delta, blocks):
                            yield chunk
                    elif event.type == "content_block_stop":
                        block = blocks.pop(event.index, None)
                        if block is not None:
                            yield block.end()
                    elif event.type == "message_delta":
                        if event.delta.stop_reason is not None:
                            finish = _FINISH.get(event.delta.stop_reason, "stop")
                        usage.update(event.usage)
                    elif event.type == "message_stop":
                        stopped = True
            except (anthropic.AnthropicError, httpx2.HTTPError, ValueError) as exc:
                yield self._error(exc)
                return
        if not stopped or finish is None or blocks:
            yield upstream.truncated(NAME)
            return
        yield Finish(finish, usage.total())

    async def aclose(self) -> None:
        await self._client.close()


@dataclass
class _Block:
    """An open content block whose deltas make one chunk at its end."""

    kind: Literal["thinking", "tool_use"]
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    signature: str | None = None

    def end(self) -> StreamChunk:
        text = "".join(self.parts)
        if self.kind == "thinking":
            return ReasoningEnd(Reasoning(text=text, signature=self.signature))
        # A tool that takes no input streams no input_json_delta: its input is {}.
        return ToolCallEnd(ToolCall(self.id, self.name, text or "{}"))


def _start(index: int, block: Any, blocks: dict[int, _Block]) -> list[StreamChunk]:
    if block.type == "thinking":
        blocks[index] = _Block("thinking", parts=[block.thinking] if block.thinking else [])
        return [ReasoningDelta(block.thinking)] if block.thinking else []
    if block.type == "redacted_thinking":
        return [ReasoningEnd(Reasoning(redacted=block.data))]
    if block.type == "tool_use":
        blocks[index] = _Block("tool_use", id=block.id, name=block.name)
        return [ToolCallStart(block.id, block.name)]
    if block.type == "text" and block.text:
        return [TextDelta(block.text)]
    return []  # server tools' blocks are Anthropic's own business


def _delta(index: int, delta: Any, blocks: dict[int, _Block]) -> list[StreamChunk]:
    block = blocks.get(index)
    if delta.type == "text_delta":
        return [TextDelta(delta.text)] if delta.text else []
    if block is None:
        return []
    if delta.type == "thinking_delta" and delta.thinking:
        block.parts.append(delta.thinking)
        return [ReasoningDelta(delta.thinking)]
    if delta.type == "signature_delta":
        block.signature = delta.signature
    elif delta.type == "input_json_delta" and delta.partial_json:
        block.parts.append(delta.partial_json)
        return [ToolCallDelta(block.id, delta.partial_json)]
    return []


@dataclass
class _Usage:
    """Usage as the stream reports it: `message_start`'s, then `message_delta`'s, which are
    cumulative and may come more than once (the latest wins; nothing is summed)."""

    input_tokens: int = 0
    cache_creation: int | None = None
    cache_read: int | None = None
    output_tokens: int = 0
    thinking_tokens: int | None = None

    def update(self, usage: Any) -> None:
        if usage.input_tokens is not None:
            self.input_tokens = usage.input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_creation = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        self.output_tokens = usage.output_tokens
        details = getattr(usage, "output_tokens_details", None)
        if details is not None:
            self.thinking_tokens = details.thinking_tokens

    def total(self) -> Usage:
        return Usage(
            self.input_tokens + (self.cache_creation or 0) + (self.cache_read or 0),
            self.output_tokens,
            reasoning_tokens=self.thinking_tokens,
            cached_input_tokens=self.cache_read,
            cache_creation_input_tokens=self.cache_creation,
        )


def _passed_on(native: NativeBody) -> dict[str, Any]:
    """The SDK's arguments for a body sent on as it came: the fields the SDK requires by name,
    every other one as they are (`extra_body`), and the client's own headers and query."""
    body = dict(native.body)
    out: dict[str, Any] = {"model": body.pop("model"), "messages": body.pop("messages")}
    for name in ("max_tokens", "stream"):
        if name in body:
            out[name] = body.pop(name)
    return {
        **out,
        "extra_body": body,
        "extra_headers": dict(native.headers),
        "extra_query": dict(native.query),
    }


def _input(request: ChatRequest) -> dict[str, Any]:
    """What both messages.create and count_tokens take of a translated request."""
    system = "\n\n".join(m.text for m in request.messages if m.role == "system")
    return {
        "model": request.model,
        "messages": cast("list[MessageParam]", _messages(request)),
        "system": system or omit,
        "tools": cast("list[ToolParam]", [_tool(t) for t in request.tools]) or omit,
        "tool_choice": cast("ToolChoiceParam", _tool_choice(request)) or omit,
    }


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    """The conversation as Anthropic's alternating turns; system messages go to `system`.

    Tool results become `tool_result` blocks of one user turn; an assistant turn is its
    reasoning (signed thinking and redacted blocks, unchanged and first, as the API requires
    them back), its text, then its `tool_use` blocks.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        if message.role == "system":
            continue
        if message.role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.text,
            }
            last = out[-1] if out else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
            continue
        blocks: list[dict[str, Any]] = []
        if message.role == "assistant":
            for block in message.reasoning:
                if block.redacted is not None:
                    blocks.append({"type": "redacted_thinking", "data": block.redacted})
                elif (signature := block.signed_by(None)) is not None:
                    blocks.append(
                        {"type": "thinking", "thinking": block.text, "signature": signature}
                    )
                # Unsigned reasoning, or signed by another provider (a `gemini:` signature), is
                # another provider's; Anthropic would refuse it.
        blocks += [_part(p) for p in message.content if not (isinstance(p, Text) and not p.text)]
        for k, call in enumerate(message.tool_calls):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": call.parsed_arguments(f"messages.{i}.tool_calls.{k}.arguments"),
                }
            )
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            out.append({"role": message.role, "content": blocks[0]["text"]})
        else:
            out.append({"role": message.role, "content": blocks})
    return out


def _part(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if part.url is not None:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": part.media_type, "data": part.data},
    }


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        out["description"] = tool.description
    return out


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if not request.tools:
        return None
    out: dict[str, Any]
    if isinstance(choice, NamedTool):
        out = {"type": "tool", "name": choice.name}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "auto" or request.parallel_tool_calls is False:
        out = {"type": "auto"}
    else:
        return None
    if request.parallel_tool_calls is False:
        out["disable_parallel_tool_use"] = True
    return out
