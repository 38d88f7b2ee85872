"""Anthropic's Messages API: `POST /v1/messages` (streamed or not) and
`POST /v1/messages/count_tokens`, over every provider.

Requests are parsed in `anthropic_request`. A stream is Anthropic's events, each with its
`event:` line, which the SDKs dispatch on (the anthropic SDK's `_streaming.py` skips events
without one; https://docs.claude.com/en/docs/build-with-claude/streaming): `message_start`,
then `ping`, then per content block `content_block_start`, `content_block_delta`s and
`content_block_stop`, blocks one after another (`dialects.blocks`: parallel tool calls whose
fragments arrive interleaved become sequential blocks; the open block streams as it arrives),
then `message_delta` (stop reason, cumulative usage) and `message_stop`. Blocks are `text`
(`text_delta`), `thinking` (`thinking_delta`s, then one `signature_delta` before its stop, as
Anthropic sends them), `redacted_thinking` (its data in the start event) and `tool_use`
(`input_json_delta`, the arguments' JSON text as its fragments come).

`message_start`'s `usage.input_tokens` is an estimate (about four characters a token): it is
sent before any provider has said, as Anthropic's own API sends its count there; the
provider's count follows in `message_delta`, which the SDKs take over it (its usage is
cumulative: input, output, cache read and cache creation tokens).

Errors are Anthropic's `{"type": "error", "error": {"type", "message"}}` with its statuses
(https://docs.claude.com/en/api/errors): 400 invalid_request_error, 401 authentication_error,
403 permission_error, 404 not_found_error (a model no provider has), 413 request_too_large,
429 rate_limit_error (with retry-after), 500 api_error (a provider's failure included: Anthropic
has no 502), 504 timeout_error, 529 overloaded_error; after the stream has begun, the same JSON
as an `event: error`, which the SDKs raise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, assert_never

from starlette.responses import JSONResponse, Response

from streamfn.chunks import Finish, FinishReason, StreamChunk, StreamError, Usage, tokens_in
from streamfn.content import Reasoning
from streamfn.dialects import Event, dumps
from streamfn.dialects.anthropic_request import FORWARDED_HEADERS, CountBody, MessagesBody
from streamfn.dialects.blocks import Begin, BlockEvent, Blocks, End, Piece
from streamfn.prices import cost_of
from streamfn.request import ChatRequest
from streamfn.streaming import Completion

__all__ = [
    "DIALECT",
    "FORWARDED_HEADERS",
    "CountBody",
    "MessageEncoder",
    "MessagesBody",
    "estimate_input_tokens",
    "message",
]

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
# An image's tokens, by Anthropic's rule (width x height / 750) for the largest image it takes
# without scaling it down (about 1.15 megapixels): an estimate's upper bound for one image.
IMAGE_TOKENS = 1600


def estimate_input_tokens(chat: ChatRequest) -> int:
    """About how many tokens `chat`'s input is, where no provider counts them: four characters
    a token, over the messages' text (system, tool results, reasoning and call arguments
    included) and the tools' names, descriptions and schemas, and 1,600 an image."""
    chars = len(chat.prompt_text())
    for tool in chat.tools:
        chars += len(tool.name) + len(tool.description or "") + len(dumps(tool.parameters))
    images = sum(len(m.images) for m in chat.messages)
    return tokens_in(chars) + IMAGE_TOKENS * images


def usage_object(usage: Usage) -> dict[str, Any]:
    """`usage` as Anthropic's: `input_tokens` are the uncached ones; the cache's reads and
    writes are counted apart (streamfn's `input_tokens` holds all three). And what the request
    cost in USD (`cost_usd`, null where the model's price is not known)."""
    read = usage.cached_input_tokens or 0
    created = usage.cache_creation_input_tokens or 0
    out: dict[str, Any] = {
        "input_tokens": max(0, usage.input_tokens - read - created),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": created,
        "cache_read_input_tokens": read,
    }
    if usage.reasoning_tokens is not None:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    out["cost_usd"] = cost_of(usage)
    return out


def _delta(index: int, delta: str) -> Event:
    return Event(
        "content_block_delta",
        f'{{"type":"content_block_delta","index":{index},"delta":{delta}}}',
    )


def _start(index: int, block: dict[str, Any]) -> Event:
    return Event(
        "content_block_start",
        dumps({"type": "content_block_start", "index": index, "content_block": block}),
    )


def _stop(index: int) -> Event:
    return Event("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}')


PING = Event("ping", '{"type":"ping"}')
MESSAGE_STOP = Event("message_stop", '{"type":"message_stop"}')


class MessageEncoder:
    """One stream's Messages events."""

    def __init__(self, *, id: str, model: str, input_tokens: int) -> None:
        self._id = id
        self._model = model
        self._input_tokens = input_tokens
        self._started = False
        self._blocks = Blocks()

    def _message_start(self) -> Event:
        body: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self._input_tokens,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return Event("message_start", dumps({"type": "message_start", "message": body}))

    def __call__(self, chunk: StreamChunk) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            if not isinstance(chunk, StreamError):
                out += [self._message_start(), PING]
        match chunk:
            case Finish(reason=reason, usage=usage):
                self._events(self._blocks.finish(), out)
                delta = {
                    "type": "message_delta",
                    "delta": {"stop_reason": STOP_REASONS[reason], "stop_sequence": None},
                    "usage": usage_object(usage),
                }
                out += [Event("message_delta", dumps(delta)), MESSAGE_STOP]
            case StreamError():
                out.append(Event("error", dumps(error_object(stream_error_type(chunk), chunk))))
            case _:
                self._events(self._blocks.feed(chunk), out)
        return out

    @staticmethod
    def _events(blocks: list[BlockEvent], out: list[Event]) -> None:
        for event in blocks:
            match event:
                case Piece(index=index, kind=kind, text=text):
                    out.append(_delta(index, _DELTAS[kind] % dumps(text)))
                case Begin(index=index, kind="text"):
                    out.append(_start(index, {"type": "text", "text": ""}))
                case Begin(index=index, kind="reasoning", whole=whole):
                    block: dict[str, Any]
                    if whole is not None and whole.redacted is not None:
                        block = {"type": "redacted_thinking", "data": whole.redacted}
                    else:
                        block = {"type": "thinking", "thinking": "", "signature": ""}
                    out.append(_start(index, block))
                case Begin(index=index, kind="tool_call", id=id, name=name):
                    out.append(
                        _start(index, {"type": "tool_use", "id": id, "name": name, "input": {}})
                    )
                case End(index=index, kind="reasoning", reasoning=reasoning):
                    signature = _signature(reasoning)
                    if signature:
                        body = dumps({"type": "signature_delta", "signature": signature})
                        out.append(_delta(index, body))
                    out.append(_stop(index))
                case End(index=index):
                    out.append(_stop(index))
                case _:
                    assert_never(event)  # type: ignore[arg-type]


# Each kind's delta, around its text as a JSON string.
_DELTAS = {
    "text": '{"type":"text_delta","text":%s}',
    "reasoning": '{"type":"thinking_delta","thinking":%s}',
    "tool_call": '{"type":"input_json_delta","partial_json":%s}',
}


def _signature(block: Reasoning | None) -> str | None:
    """A thinking block's signature as it travels to clients (another provider's tagged, as
    `content.tag_signature` has it); none for redacted or unsigned blocks."""
    if block is None or block.redacted is not None:
        return None
    return block.signature


def _thinking(block: Reasoning) -> dict[str, Any]:
    if block.redacted is not None:
        return {"type": "redacted_thinking", "data": block.redacted}
    return {"type": "thinking", "thinking": block.text, "signature": block.signature or ""}


def message(result: Completion, *, id: str, model: str) -> dict[str, Any]:
    """A whole `message`, for a request that did not ask for a stream."""
    content: list[dict[str, Any]] = [_thinking(b) for b in result.reasoning]
    if result.text:
        content.append({"type": "text", "text": result.text})
    for call in result.tool_calls:
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None  # cut short at max_tokens
        input = arguments if isinstance(arguments, dict) else {}
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": input})
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[result.finish.reason],
        "stop_sequence": None,
        "usage": usage_object(result.finish.usage),
    }


# streamfn's error types as Anthropic's, once a stream has begun.
_STREAM_TYPES = {
    "bad_request": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
}
# Anthropic's type of each status (https://docs.claude.com/en/api/errors; the SDK's
# `types/shared/error_type.py`).
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def stream_error_type(error: StreamError) -> str:
    # A provider refusing streamfn's key (`auth`) is no fault of the caller's key: api_error.
    return _STREAM_TYPES.get(error.type, "api_error")


def error_object(kind: str, error: StreamError | str) -> dict[str, Any]:
    message = error.message if isinstance(error, StreamError) else error
    return {"type": "error", "error": {"type": kind, "message": message}}


def http_error(status: int, type: str) -> tuple[int, str]:
    """The status and Anthropic error type of a refusal with streamfn's `status` and `type`."""
    if type in ("unknown_model", "unknown_provider"):
        return 404, "not_found_error"  # as Anthropic answers a model it does not have
    if type == "budget_exceeded":
        # Not one of Anthropic's types, but its status is (429): the SDKs raise their
        # RateLimitError, and the type says why.
        return 429, type
    if type == "overloaded":
        return 529, "overloaded_error"
    if status == 422:
        status = 400  # a malformed body: Anthropic's 400
    elif status == 502:
        status = 500  # a provider's failure
    kind = _STATUS_TYPES.get(status)
    return status, kind or ("api_error" if status >= 500 else "invalid_request_error")


class AnthropicDialect:
    """Errors as Anthropic's; the anthropic SDKs raise their typed error for each status
    (BadRequestError, AuthenticationError, RateLimitError, OverloadedError, ...)."""

    stream_headers: Mapping[str, str] = {}
    keepalive: Event | None = PING  # as Anthropic keeps its streams alive

    def error(
        self,
        status: int,
        type: str,
        message: str,
        *,
        param: str | None = None,
        retryable: bool = False,  # noqa: ARG002 - the status and retry-after say it
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        status, kind = http_error(status, type)
        if param and param not in message:
            message = f"{param}: {message}"  # Anthropic's errors name the field so
        return JSONResponse(error_object(kind, message), status_code=status, headers=headers)


DIALECT = AnthropicDialect()
