"""`openai` and any OpenAI-compatible server: Chat Completions streaming with the official SDK.

Wire format: `data: {chat.completion.chunk}` lines, a last chunk with `usage` and no choices
(asked for with `stream_options.include_usage`), then `data: [DONE]`
(https://platform.openai.com/docs/api-reference/chat-streaming).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Literal, cast

import openai
from openai import AsyncOpenAI, omit
from openai.types.chat import ChatCompletionMessageParam

from streamfn.chunks import Finish, FinishReason, StreamChunk, TextDelta, Usage
from streamfn.providers import upstream
from streamfn.request import ChatRequest

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIChatProvider:
    def __init__(
        self,
        *,
        name: str,
        api_key: str | None,
        base_url: str | None,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"],
        total_timeout_s: float,
        connect_timeout_s: float,
        max_retries: int,
    ) -> None:
        self.name = name
        self._api_key = api_key
        self._max_tokens_param = max_tokens_param
        # One client per process: its connection pool serves every request. Servers that need
        # no key (llama.cpp, vLLM without --api-key) still get a placeholder, as the SDK wants one.
        self._client = AsyncOpenAI(
            api_key=api_key or "unused",
            base_url=base_url,
            max_retries=max_retries,
            timeout=openai.Timeout(total_timeout_s, connect=connect_timeout_s),
        )

    def _error(self, exc: openai.OpenAIError) -> StreamChunk:
        """The one place OpenAI SDK exceptions become `StreamError`s."""
        if isinstance(exc, openai.APITimeoutError):
            return upstream.timed_out(self.name)
        if isinstance(exc, openai.APIConnectionError):
            return upstream.unreachable(self.name, "the connection failed or broke")
        body = exc.body if isinstance(exc, openai.APIError) else None
        detail = body.get("message") if isinstance(body, dict) else body
        detail = upstream.redact(str(detail or ""), [self._api_key])
        if isinstance(exc, openai.APIStatusError):
            return upstream.error_for_status(
                self.name,
                exc.status_code,
                detail,
                retry_after_s=upstream.retry_after(exc.response.headers),
            )
        if isinstance(exc, openai.APIError):
            # An `error` object inside the stream, after a 200.
            return upstream.unreachable(self.name, f"error mid-stream: {detail}")
        return upstream.malformed(self.name, type(exc).__name__)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        limit = omit if request.max_tokens is None else request.max_tokens
        messages = cast(
            "list[ChatCompletionMessageParam]",
            [{"role": m.role, "content": m.content} for m in request.messages],
        )
        try:
            response = await self._client.chat.completions.create(
                model=request.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=limit if self._max_tokens_param == "max_tokens" else omit,
                max_completion_tokens=limit if self._max_tokens_param != "max_tokens" else omit,
                temperature=omit if request.temperature is None else request.temperature,
                top_p=omit if request.top_p is None else request.top_p,
                stop=list(request.stop) or omit,
            )
        except openai.OpenAIError as exc:
            yield self._error(exc)
            return
        finish: FinishReason | None = None
        usage: Usage | None = None
        text: list[str] = []
        # Leaving this block, however it is left, closes the HTTP response: a client that goes
        # away closes the upstream connection, and generation stops.
        async with response:
            try:
                async for chunk in response:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    for choice in chunk.choices[:1]:
                        if choice.delta is not None and choice.delta.content:
                            text.append(choice.delta.content)
                            yield TextDelta(choice.delta.content)
                        if choice.finish_reason is not None:
                            finish = _FINISH.get(choice.finish_reason, "stop")
            except openai.OpenAIError as exc:
                yield self._error(exc)
                return
            except ValueError as exc:  # a line that is not JSON, or not a chunk
                yield upstream.malformed(self.name, str(exc)[:200])
                return
        if finish is None:
            yield upstream.truncated(self.name)
            return
        if usage is None:  # servers that ignore stream_options
            prompt = "\n".join(m.content for m in request.messages)
            usage = Usage.estimate(prompt, "".join(text))
        yield Finish(finish, usage)

    async def aclose(self) -> None:
        await self._client.close()
