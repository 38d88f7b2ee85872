"""`openai` and any OpenAI-compatible server: Chat Completions streaming, sent over
`providers.openai_http` (which says why not through the official SDK).

Wire format: `data: {chat.completion.chunk}` lines, a last chunk with `usage` and no choices
(asked for with `stream_options.include_usage`), then `data: [DONE]`
(https://platform.openai.com/docs/api-reference/chat-streaming). Tool calls arrive as
`delta.tool_calls[]` fragments (joined by `providers.assembly.ToolCallAssembler`), reasoning as
`reasoning_content`, `reasoning` or `reasoning_details[]` depending on the server.

A request that came in the Responses API (`POST /v1/responses`) goes to a server that serves
that API itself (`responses`) as it came, and is read as its events (`openai_responses`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx2
import orjson

from streamfn.chunks import (
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningEnd,
    StreamChunk,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from streamfn.content import (
    Message,
    NamedTool,
    OutputFormat,
    Part,
    Reasoning,
    Text,
    Tool,
    ToolChoice,
)
from streamfn.providers import upstream
from streamfn.providers.assembly import ReasoningTracker, ToolCallAssembler
from streamfn.providers.openai_http import OpenAIHTTP
from streamfn.providers.openai_responses import OpenAIResponses
from streamfn.providers.sse_reader import SSEReader
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
        max_connections: int = 10000,
        reasoning_back: bool = True,
        responses: bool = False,
        organization: str | None = None,
        project: str | None = None,
    ) -> None:
        self.name = name
        # Whether plain reasoning goes back on later turns as `reasoning_content` (DeepSeek);
        # OpenAI's own API has no such field.
        self._reasoning_back = reasoning_back
        self._max_tokens_param = max_tokens_param
        self._http = OpenAIHTTP(
            name=name,
            api_key=api_key,
            base_url=base_url,
            total_timeout_s=total_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
            organization=organization,
            project=project,
        )
        # A server that serves the Responses API itself is passed Responses requests through.
        self._responses = OpenAIResponses(self._http) if responses else None

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        native = request.native
        if self._responses is not None and native is not None and native.protocol == "responses":
            return self._responses.stream(request)
        return self._chat(request)

    async def _chat(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        response = await self._http.open("/chat/completions", self._body(request))
        if isinstance(response, StreamError):
            yield response
            return
        finish: FinishReason | None = None
        usage: Usage | None = None
        chars = 0  # generated, for an estimate when the server reports no usage
        calls = ToolCallAssembler()
        reasoning = ReasoningTracker()
        reader = SSEReader()
        # Leaving this block, however it is left, closes the HTTP response: a client that goes
        # away closes the upstream connection, and generation stops.
        try:
            async for piece in response.aiter_bytes():
                for _, data in reader.feed(piece):
                    if data == b"[DONE]":
                        break
                    chunk = orjson.loads(data)
                    if not isinstance(chunk, dict):
                        raise ValueError("a chunk that is not a JSON object")
                    if error := chunk.get("error"):
                        # An `error` object inside the stream, after a 200, as the SDK reads it.
                        yield self._mid_stream(error)
                        return
                    if (counted := chunk.get("usage")) is not None:
                        usage = _usage(counted)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta")
                        if delta:
                            for out in _deltas(delta, calls, reasoning):
                                if isinstance(out, TextDelta | ReasoningDelta):
                                    chars += len(out.text)
                                elif isinstance(out, ToolCallDelta):
                                    chars += len(out.arguments)
                                yield out
                        if (reason := choice.get("finish_reason")) is not None and finish is None:
                            finish = _FINISH.get(reason, "stop")
                            if calls and finish == "stop":
                                finish = "tool_calls"  # servers that say stop after calls
                            for out in [*reasoning.close(), *calls.end()]:
                                yield out
                        break  # the first choice only: n is never more than 1
        except httpx2.TimeoutException:
            yield upstream.timed_out(self.name)
            return
        except httpx2.TransportError:
            yield upstream.unreachable(self.name, "the connection failed or broke")
            return
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, or not a chunk
            yield upstream.malformed(self.name, str(exc)[:200])
            return
        finally:
            await response.aclose()
        if finish is None:
            yield upstream.truncated(self.name)
            return
        if usage is None:  # servers that ignore stream_options
            usage = Usage.estimate(request.prompt_text(), chars)
        yield Finish(finish, usage)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        """The Chat Completions request body: only what the request sets."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [self._message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **request.sampling(
                max_tokens=self._max_tokens_param,
                temperature="temperature",
                top_p="top_p",
                stop="stop",
            ),
        }
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if (choice := _tool_choice(request.tool_choice)) is not None:
            body["tool_choice"] = choice
        if request.reasoning is not None and request.reasoning.effort is not None:
            body["reasoning_effort"] = request.reasoning.effort
        if (wanted := request.output_format) is not None:
            body["response_format"] = _response_format(wanted)
        return body

    def _mid_stream(self, error: Any) -> StreamChunk:
        """An `error` object inside the stream, after a 200."""
        message = error.get("message") if isinstance(error, dict) else None
        detail = self._http.redact(str(message or error or ""))
        return upstream.unreachable(self.name, f"error mid-stream: {detail}")

    def _message(self, message: Message) -> dict[str, Any]:
        """One message in the Chat Completions form."""
        if message.role == "tool":
            return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
        if message.role == "assistant":
            out: dict[str, Any] = {"role": "assistant", "content": message.text or None}
            if message.tool_calls:
                out["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in message.tool_calls
                ]
            # DeepSeek's thinking mode wants its reasoning back on tool-call turns. Signed or
            # redacted blocks are another provider's (Anthropic's) and mean nothing here.
            plain = "".join(b.text for b in message.reasoning if b.signature is b.redacted is None)
            if plain and self._reasoning_back:
                out["reasoning_content"] = plain
            return out
        if message.images:
            return {"role": message.role, "content": [_part(p) for p in message.content]}
        return {"role": message.role, "content": message.text}

    async def aclose(self) -> None:
        await self._http.aclose()


def _part(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    return {"type": "image_url", "image_url": {"url": part.data_url}}


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _response_format(wanted: OutputFormat) -> dict[str, Any]:
    if wanted.kind == "json_object":
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": wanted.name or "output", "schema": wanted.schema or {}}
    if wanted.description is not None:
        spec["description"] = wanted.description
    if wanted.strict is not None:
        spec["strict"] = wanted.strict
    return {"type": "json_schema", "json_schema": spec}


def _tool_choice(choice: ToolChoice | None) -> Any:
    if choice is None:
        return None
    if isinstance(choice, NamedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def _usage(usage: dict[str, Any]) -> Usage:
    """`usage`: OpenAI's (cache reads in `prompt_tokens_details.cached_tokens`), with cache
    writes as OpenRouter reports them (`prompt_tokens_details.cache_write_tokens`) and cache
    reads as DeepSeek does (`prompt_cache_hit_tokens`), both part of `prompt_tokens`."""
    completion = usage.get("completion_tokens_details") or {}
    prompt = usage.get("prompt_tokens_details") or {}
    read = prompt.get("cached_tokens")
    if read is None:
        read = usage.get("prompt_cache_hit_tokens")
    return Usage(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        reasoning_tokens=completion.get("reasoning_tokens"),
        cached_input_tokens=read,
        cache_creation_input_tokens=prompt.get("cache_write_tokens"),
    )


def _deltas(
    delta: dict[str, Any], calls: ToolCallAssembler, reasoning: ReasoningTracker
) -> list[StreamChunk]:
    """The chunks of one `delta`, in order: reasoning, then text, then tool-call fragments."""
    out: list[StreamChunk] = []
    # Reasoning comes in one of three fields, by server: OpenRouter's `reasoning_details[]`
    # (which it doubles as a plain `reasoning` string, so it goes first and alone), DeepSeek's
    # `reasoning_content`, vLLM's (0.11+) `reasoning`.
    content, fragments = delta.get("content"), delta.get("tool_calls")
    details = delta.get("reasoning_details")
    if isinstance(details, list) and details:
        for detail in details:
            if not isinstance(detail, dict):
                continue
            kind = detail.get("type")
            if kind == "reasoning.encrypted" and isinstance(detail.get("data"), str):
                out += reasoning.close()
                out.append(ReasoningEnd(Reasoning(redacted=detail["data"])))
                continue
            piece = detail.get("text") if kind == "reasoning.text" else detail.get("summary")
            if isinstance(piece, str):
                out += reasoning.add(piece)
            if isinstance(detail.get("signature"), str) and detail["signature"]:
                out += reasoning.close(detail["signature"])
    else:
        for name in ("reasoning_content", "reasoning"):
            piece = delta.get(name)
            if isinstance(piece, str) and piece:
                out += reasoning.add(piece)
                break
    if content or fragments:
        out += reasoning.close()
    if content:
        out.append(TextDelta(content))
    for fragment in fragments or ():
        function = fragment.get("function") or {}
        out += calls.feed(
            fragment.get("index"),
            fragment.get("id"),
            function.get("name"),
            function.get("arguments"),
        )
    return out
