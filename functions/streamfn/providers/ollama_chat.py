"""`ollama`: `/api/chat` over httpx2, the whole conversation, NDJSON read line by line.

Wire format (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion):
one JSON object a line, `{"message": {"role", "content", "thinking"?, "tool_calls"?}, "done":
false}`, then a last line with `"done": true`, `done_reason`, `prompt_eval_count` and
`eval_count`. Tool calls come whole, with arguments as an object; thinking as a `thinking`
field (asked for with `think`); images go up as a list of base64 strings per message. A failure
is an HTTP status with `{"error": "..."}`, or such a line mid-stream. Ollama has no SDK of its
own in our dependencies: its HTTP API is small and httpx2 (the SDKs' transport) is already here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx2

from streamfn.chunks import (
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamChunk,
    TextDelta,
    ToolCallEnd,
    Usage,
)
from streamfn.content import Message, ToolCall
from streamfn.providers import upstream
from streamfn.providers.assembly import ReasoningTracker, new_call_id, whole_call
from streamfn.providers.pool import streaming_client
from streamfn.providers.registry import ollama_base_url as base_url
from streamfn.request import ChatRequest

NAME = "ollama"


class OllamaProvider:
    def __init__(
        self,
        *,
        host: str,
        api_key: str | None,
        total_timeout_s: float,
        connect_timeout_s: float,
        max_connections: int = 10000,
    ) -> None:
        self._api_key = api_key
        self._client = streaming_client(
            base_url=base_url(host),
            headers={"authorization": f"Bearer {api_key}"} if api_key else None,
            total_timeout_s=total_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        options = request.sampling(
            max_tokens="num_predict", temperature="temperature", top_p="top_p", stop="stop"
        )
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m, request) for m in request.messages],
            "stream": True,
            "options": options,
        }
        if request.tools and request.tool_choice != "none":
            payload["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description or "",
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        if request.reasoning is not None:
            payload["think"] = request.reasoning.effort or True
        if (wanted := request.output_format) is not None:
            # Structured outputs: `format` is "json" or a JSON schema (Ollama's api.md).
            payload["format"] = wanted.schema if wanted.schema is not None else "json"
        chars = 0  # generated, for an estimate where Ollama leaves its counts out
        reasoning = ReasoningTracker()
        called = False
        try:
            # Leaving this block, however it is left, closes the response and its connection.
            async with self._client.stream("POST", "/api/chat", json=payload) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    yield upstream.error_for_status(
                        NAME,
                        response.status_code,
                        upstream.redact(_error_text(body), [self._api_key]),
                        retry_after_s=upstream.retry_after(response.headers),
                    )
                    return
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        data = json.loads(line)
                    except ValueError:
                        yield upstream.malformed(NAME, "a line that is not JSON")
                        return
                    if not isinstance(data, dict):
                        yield upstream.malformed(NAME, "a line that is not an object")
                        return
                    if "error" in data:
                        detail = upstream.redact(str(data["error"]), [self._api_key])
                        yield upstream.unreachable(NAME, f"error mid-stream: {detail}")
                        return
                    message = data.get("message") or {}
                    for chunk in _chunks(message, reasoning):
                        called = called or isinstance(chunk, ToolCallEnd)
                        if isinstance(chunk, TextDelta | ReasoningDelta):
                            chars += len(chunk.text)
                        yield chunk
                    if data.get("done"):
                        for chunk in reasoning.close():
                            yield chunk
                        reason: FinishReason = "tool_calls" if called else "stop"
                        if data.get("done_reason") == "length":
                            reason = "length"
                        yield Finish(reason, _usage(data, request, chars))
                        return
        except httpx2.TimeoutException:
            yield upstream.timed_out(NAME)
            return
        except httpx2.TransportError:
            yield upstream.unreachable(NAME, "the connection failed or broke")
            return
        yield upstream.truncated(NAME)

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200]
    return str(data.get("error", "")) if isinstance(data, dict) else str(data)[:200]


def _usage(done: dict[str, Any], request: ChatRequest, output: int) -> Usage:
    prompt, generated = done.get("prompt_eval_count"), done.get("eval_count")
    if isinstance(prompt, int) and isinstance(generated, int):
        return Usage(prompt, generated)
    # Ollama leaves prompt_eval_count out when the prompt was cached.
    estimate = Usage.estimate(request.prompt_text(), output)
    return Usage(
        prompt if isinstance(prompt, int) else estimate.input_tokens,
        generated if isinstance(generated, int) else estimate.output_tokens,
        estimated=True,
    )


def _message(message: Message, request: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.text}
    if message.images:
        # Capabilities keep URL images away from Ollama, which takes base64 data only.
        out["images"] = [image.data for image in message.images]
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.parsed_arguments("tool_calls")}}
            for c in message.tool_calls
        ]
    plain = "".join(b.text for b in message.reasoning if b.signature is b.redacted is None)
    if plain:
        out["thinking"] = plain
    if message.role == "tool":
        # Ollama matches a result to its call by the tool's name, not by an id.
        out["tool_name"] = request.call_name(message.tool_call_id)
    return out


def _chunks(message: dict[str, Any], reasoning: ReasoningTracker) -> list[StreamChunk]:
    """The chunks of one line's `message`: thinking, content, then whole tool calls."""
    out: list[StreamChunk] = []
    thinking = message.get("thinking")
    if isinstance(thinking, str):
        out += reasoning.add(thinking)
    content = message.get("content")
    calls = message.get("tool_calls")
    if content or calls:
        out += reasoning.close()
    if isinstance(content, str) and content:
        out.append(TextDelta(content))
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        arguments = function.get("arguments")
        out += whole_call(
            ToolCall(
                str(call.get("id") or new_call_id()),
                str(function["name"]),
                arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
            )
        )
    return out
