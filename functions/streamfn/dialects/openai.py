"""The OpenAI Chat Completions API: `POST /v1/chat/completions` and `GET /v1/models`.

Requests are parsed in `openai_request` (OpenAI's fields, refused or ignored by name). Streams
are `chat.completion.chunk`s: the role first, then content, `reasoning_content` (as
OpenAI-compatible servers send reasoning) and `tool_calls` fragments by index, the finish reason,
a usage chunk when `stream_options.include_usage` asks, and `data: [DONE]`. A call's signature
(Gemini's thought signature) travels as Gemini's own OpenAI-compatible API carries it, in the
call's `extra_content.google.thought_signature`. A failure after the first chunk is an in-band
`data: {"error": {...}}` then `[DONE]`, OpenRouter's convention, which the openai SDKs raise as
an `APIError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, assert_never

from starlette.responses import JSONResponse, Response

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
    Usage,
)
from streamfn.content import Reasoning, ToolCall
from streamfn.dialects import Event, dumps
from streamfn.dialects.openai_request import CompletionBody
from streamfn.prices import cost_of
from streamfn.streaming import Completion

__all__ = ["DIALECT", "ChunkEncoder", "CompletionBody", "completion"]


def reasoning_detail(block: Reasoning) -> dict[str, Any]:
    """A signed or encrypted block as OpenRouter's `reasoning_details[]` entry."""
    if block.redacted is not None:
        return {"type": "reasoning.encrypted", "data": block.redacted}
    return {"type": "reasoning.text", "text": block.text, "signature": block.signature}


def extra_content(call: ToolCall) -> dict[str, Any]:
    """The call's signature as Gemini's OpenAI-compatible API (https://ai.google.dev/gemini-api/
    docs/openai) has it, in the call's `extra_content`; nothing for a call without one."""
    if call.signature is None:
        return {}
    return {"extra_content": {"google": {"thought_signature": call.signature}}}


def usage_object(usage: Usage) -> dict[str, Any]:
    """OpenAI's `usage`, with cache writes as OpenRouter reports them
    (`prompt_tokens_details.cache_write_tokens`) and what the request cost in USD (`cost_usd`,
    null where the model's price is not known)."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    prompt: dict[str, int] = {}
    if usage.cached_input_tokens is not None:
        prompt["cached_tokens"] = usage.cached_input_tokens
    if usage.cache_creation_input_tokens is not None:
        prompt["cache_write_tokens"] = usage.cache_creation_input_tokens
    if prompt:
        out["prompt_tokens_details"] = prompt
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    out["cost_usd"] = cost_of(usage)
    return out


DONE = Event(None, "[DONE]")


class ChunkEncoder:
    """One stream's `chat.completion.chunk`s."""

    def __init__(self, *, id: str, model: str, include_usage: bool) -> None:
        self._head = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._include_usage = include_usage
        self._started = False
        self._indices: dict[str, int] = {}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Event:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return Event(None, dumps({**self._head, "choices": [choice]}))

    def __call__(self, chunk: StreamChunk) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        match chunk:
            case TextDelta(text=text):
                out.append(self._chunk({"content": text}))
            case ReasoningDelta(text=text):
                out.append(self._chunk({"reasoning_content": text}))
            case ReasoningEnd(block=block):
                if block.signature is not None or block.redacted is not None:
                    out.append(self._chunk({"reasoning_details": [reasoning_detail(block)]}))
            case ToolCallStart(id=id, name=name):
                index = self._indices[id] = len(self._indices)
                call = {
                    "index": index,
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                out.append(self._chunk({"tool_calls": [call]}))
            case ToolCallDelta(id=id, arguments=arguments):
                fragment = {"index": self._indices[id], "function": {"arguments": arguments}}
                out.append(self._chunk({"tool_calls": [fragment]}))
            case ToolCallEnd(call=call):
                if call.signature is not None:
                    fragment = {"index": self._indices[call.id], **extra_content(call)}
                    out.append(self._chunk({"tool_calls": [fragment]}))
            case Finish(reason=reason, usage=usage):
                out.append(self._chunk({}, reason))
                if self._include_usage:
                    body = {**self._head, "choices": [], "usage": usage_object(usage)}
                    out.append(Event(None, dumps(body)))
                out.append(DONE)
            case StreamError():
                error = error_object(error_type(chunk.type), chunk.message, code=chunk.type)
                out += [Event(None, dumps(error)), DONE]
            case _:
                assert_never(chunk)
        return out


def completion(result: Completion, *, id: str, model: str) -> dict[str, Any]:
    """A whole `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None, "refusal": None}
    if result.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
                **extra_content(c),
            }
            for c in result.tool_calls
        ]
    thought = "".join(b.text for b in result.reasoning)
    if thought:
        message["reasoning_content"] = thought
    signed = [b for b in result.reasoning if b.signature is not None or b.redacted is not None]
    if signed:
        message["reasoning_details"] = [reasoning_detail(b) for b in signed]
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": result.finish.reason,
            }
        ],
        "usage": usage_object(result.finish.usage),
    }


# streamfn's error types as OpenAI's `type` (https://platform.openai.com/docs/guides/error-codes).
_TYPES = {
    "auth": "api_error",  # the provider refused streamfn's key: not the caller's fault
    "rate_limit": "rate_limit_error",
    "budget_exceeded": "budget_exceeded",  # LiteLLM's type for a spent budget, also a 429
    "overloaded": "server_error",
    "timeout": "timeout_error",
    "upstream_unavailable": "server_error",
    "upstream_error": "server_error",
    "internal": "server_error",
}


def error_type(type: str) -> str:
    return _TYPES.get(type, "invalid_request_error")


def error_object(
    type: str, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class OpenAIDialect:
    """Errors as OpenAI's `{"error": {"message", "type", "param", "code"}}`; the openai SDKs
    raise their typed error for each status (BadRequestError, RateLimitError, ...)."""

    stream_headers: Mapping[str, str] = {}
    keepalive: Event | None = None

    def error(
        self,
        status: int,
        type: str,
        message: str,
        *,
        param: str | None = None,
        retryable: bool = False,  # noqa: ARG002 - the status and Retry-After say it in OpenAI's API
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        kind = "authentication_error" if status == 401 else error_type(type)
        if status >= 500 and kind == "invalid_request_error":
            kind = "server_error"
        body = error_object(kind, message, param=param, code=type)
        return JSONResponse(body, status_code=status, headers=headers)


DIALECT = OpenAIDialect()
