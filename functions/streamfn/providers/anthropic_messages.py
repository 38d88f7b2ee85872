"""`anthropic`: Messages streaming with the official SDK.

Wire format (https://docs.anthropic.com/en/api/messages-streaming): `message_start` (input
usage), `content_block_start`, `content_block_delta` (`text_delta`), `content_block_stop`,
`message_delta` (stop reason, cumulative output usage), `message_stop`; `ping` anywhere; an
`error` event may replace the rest of the stream (overloaded_error and others).

`temperature` and `top_p` are not sent: API version 2026-10-21, which SDK 2.x speaks, rejects
every sampling parameter with a 400, and the SDK no longer has them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import cast

import anthropic
import httpx2
from anthropic import AsyncAnthropic, omit
from anthropic.types import MessageParam

from streamfn.chunks import Finish, FinishReason, StreamChunk, TextDelta, Usage
from streamfn.providers import upstream
from streamfn.request import ChatRequest

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
    ) -> None:
        self._api_key = api_key
        self._default_max_tokens = default_max_tokens
        self._client = AsyncAnthropic(
            api_key=api_key or "unused",
            base_url=base_url,
            max_retries=max_retries,
            timeout=anthropic.Timeout(total_timeout_s, connect=connect_timeout_s),
        )

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

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = cast(
            "list[MessageParam]",
            [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        )
        try:
            response = await self._client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens or self._default_max_tokens,
                messages=messages,
                system=system or omit,
                stop_sequences=list(request.stop) or omit,
                stream=True,
            )
        except anthropic.AnthropicError as exc:
            yield self._error(exc)
            return
        input_tokens = output_tokens = 0
        finish: FinishReason | None = None
        stopped = False
        async with response:  # closes the HTTP response however this block is left
            try:
                async for event in response:
                    if event.type == "message_start":
                        usage = event.message.usage
                        input_tokens = (
                            usage.input_tokens
                            + (usage.cache_creation_input_tokens or 0)
                            + (usage.cache_read_input_tokens or 0)
                        )
                        output_tokens = usage.output_tokens
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield TextDelta(event.delta.text)
                    elif event.type == "message_delta":
                        if event.delta.stop_reason is not None:
                            finish = _FINISH.get(event.delta.stop_reason, "stop")
                        output_tokens = event.usage.output_tokens  # cumulative
                    elif event.type == "message_stop":
                        stopped = True
            except (anthropic.AnthropicError, httpx2.HTTPError, ValueError) as exc:
                yield self._error(exc)
                return
        if not stopped or finish is None:
            yield upstream.truncated(NAME)
            return
        yield Finish(finish, Usage(input_tokens, output_tokens))

    async def aclose(self) -> None:
        await self._client.close()
