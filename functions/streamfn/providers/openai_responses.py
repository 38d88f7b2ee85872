"""A Responses request (`POST /v1/responses`) passed through to an OpenAI-compatible server
that serves the Responses API itself (OpenAI's own; STREAMFN_OPENAI_RESPONSES, or a compatible
provider's `responses`), over `providers.openai_http`; `providers.openai_chat` hands it over.

Sent: the client's body as it came (`request.native`: its `input` the whole context, a chain's
stored items expanded), with what streamfn must change: the model (the one routing resolved),
`max_output_tokens` (bounded by STREAMFN_MAX_TOKENS_CAP), `stream` (always, upstream), `store`
false (a chain is streamfn's to keep), `include` gaining `reasoning.encrypted_content` (so that
reasoning comes back on later turns, as the client keeps it). And two things the upstream would
refuse: item ids streamfn made (`msg_`/`rs_`/`fc_<request id>_<n>`, dialects/responses.py's
scheme), which it would look up as its own (a 404, nothing being stored there); and reasoning
items it did not encrypt (another provider's signature, `redacted:` data, none at all), which
it cannot verify (a 400). Reasoning it did encrypt travels through clients tagged with the
provider's name (`content.tag_signature`), and goes back untagged.

Read: the stream's events (openai-python's `types/responses/response_stream_event.py`), raw, as
`providers.sse_reader` says why: `response.output_text.delta` (and `refusal.delta`), function
calls (`output_item.added`, `function_call_arguments.delta`s, `output_item.done` with the whole
call), reasoning (`reasoning_summary_text.delta`s, or `reasoning_text.delta`s, and the item's
`output_item.done` with its `encrypted_content`), then `response.completed`, or
`response.incomplete` (max_output_tokens, content_filter), or `response.failed` or `error`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

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
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamfn.content import Reasoning, ToolCall, tag_signature
from streamfn.dialects.responses_custom import custom_call
from streamfn.providers import upstream
from streamfn.providers.assembly import whole_call
from streamfn.providers.openai_http import OpenAIHTTP
from streamfn.providers.sse_reader import SSEReader
from streamfn.request import ChatRequest
from streamfn.response_ids import response_of

ENCRYPTED = "reasoning.encrypted_content"
# A failed response's `error.code` (openai-python's `types/responses/response_error.py`) as the
# HTTP status it is the equivalent of; other codes, and none, are the server's error (500).
_STATUS_OF_CODE = {
    "server_error": 500,
    "rate_limit_exceeded": 429,
    "vector_store_timeout": 504,
    "invalid_prompt": 400,
    "data_residency_mismatch": 400,
    "bio_policy": 400,
    "misalignment_policy_violation": 400,
    "context_length_exceeded": 400,
}


def responses_body(request: ChatRequest, provider: str) -> dict[str, Any] | None:
    """`request`'s own Responses body, ready for `provider`'s server; None when it came in
    another protocol (then it is translated)."""
    native = request.native
    if native is None or native.protocol != "responses":
        return None
    body = dict(native.body)
    body.pop("previous_response_id", None)
    body["model"] = request.model
    body["stream"] = True
    body["store"] = False
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    include = body.get("include")
    include = list(include) if isinstance(include, list) else []
    if ENCRYPTED not in include:
        include.append(ENCRYPTED)
    body["include"] = include
    if isinstance(body.get("input"), list):
        body["input"] = upstream_input(body["input"], provider)
    return body


def upstream_input(items: list[Any], provider: str) -> list[Any]:
    """`items` as `provider`'s server takes them: its own reasoning untagged, any other
    reasoning left out, and no item id streamfn made. The items themselves are not changed:
    they are the context a stored response keeps."""
    tag = f"{provider}:"
    out: list[Any] = []
    for item in items:
        if not isinstance(item, Mapping):
            out.append(item)
            continue
        if item.get("type") == "reasoning":
            encrypted = item.get("encrypted_content")
            if not isinstance(encrypted, str) or not encrypted.startswith(tag):
                continue  # another provider's, redacted, or plain text: it cannot verify it
            item = {**item, "encrypted_content": encrypted[len(tag) :]}
        id = item.get("id")
        if isinstance(id, str) and response_of(id) is not None:  # streamfn's, not upstream's
            item = {name: value for name, value in item.items() if name != "id"}
        out.append(item)
    return out


class OpenAIResponses:
    """Responses streaming for `providers.openai_chat.OpenAIChatProvider`, on its client."""

    def __init__(self, http: OpenAIHTTP) -> None:
        self._http = http
        self._name = http.name

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        body = responses_body(request, self._name)
        assert body is not None, "only a Responses request is passed through"
        response = await self._http.open("/responses", body)
        if isinstance(response, StreamError):
            yield response
            return
        reading = _Reading(self._name)
        reader = SSEReader()
        chars = 0  # generated, for an estimate when the server reports no usage
        # Leaving this block, however it is left, closes the HTTP response: a client that goes
        # away closes the upstream connection, and generation stops.
        try:
            async for piece in response.aiter_bytes():
                for _, data in reader.feed(piece):
                    if data == b"[DONE]":  # not OpenAI's, but some servers end so
                        break
                    event = orjson.loads(data)
                    kind = event["type"]
                    # The deltas are most of a stream's events: read here, the rest by `other`.
                    if kind == "response.output_text.delta":
                        if delta := event["delta"]:
                            chars += len(delta)
                            yield TextDelta(delta)
                        continue
                    if kind == "response.function_call_arguments.delta":
                        call = reading.calls.get(event["output_index"])
                        if call is not None and (delta := event["delta"]):
                            call.parts.append(delta)
                            chars += len(delta)
                            yield ToolCallDelta(call.id, delta)
                        continue
                    if kind in _REASONING_DELTAS:
                        if delta := event["delta"]:
                            chars += len(delta)
                            reading.thought(event["output_index"]).append(delta)
                            yield ReasoningDelta(delta)
                        continue
                    for chunk in reading.other(kind, event):
                        yield chunk
                    if reading.ended:
                        break
                if reading.ended:
                    break
        except httpx2.TimeoutException:
            yield upstream.timed_out(self._name)
            return
        except httpx2.TransportError:
            yield upstream.unreachable(self._name, "the connection failed or broke")
            return
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # not JSON, not an event
            yield upstream.malformed(self._name, f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        finally:
            await response.aclose()
        if reading.error is not None:
            yield self._failed(reading.error)
        elif reading.finish is None:
            yield upstream.truncated(self._name)
        else:  # a server that reports no usage is estimated
            usage = reading.usage or Usage.estimate(request.prompt_text(), chars)
            yield Finish(reading.finish, usage)

    def _failed(self, error: dict[str, Any]) -> StreamError:
        """A failed response's `error`, or an `error` event, as the HTTP status it is the
        equivalent of (as `upstream.error_for_status` maps every provider's)."""
        code = error.get("code")
        code = code if isinstance(code, str) and code else None
        status = _STATUS_OF_CODE.get(code, 500) if code else 500
        detail = self._http.redact(str(error.get("message") or ""))
        return upstream.error_for_status(self._name, status, detail, reported=code or "an error")


_REASONING_DELTAS = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)


class _Call:
    __slots__ = ("id", "name", "parts")

    def __init__(self, id: str, name: str) -> None:
        self.id = id
        self.name = name
        self.parts: list[str] = []


class _Reading:
    """One stream's open items, by `output_index`, and how it ended: a finish reason and
    usage (None when the server reports none), or an error."""

    __slots__ = ("called", "calls", "ended", "error", "finish", "name", "thoughts", "usage")

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: dict[int, _Call] = {}
        self.thoughts: dict[int, list[str]] = {}
        self.called = False
        self.ended = False
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.error: dict[str, Any] | None = None

    def thought(self, index: int) -> list[str]:
        """The text so far of reasoning item `index` (a server may skip its `added`)."""
        parts = self.thoughts.get(index)
        if parts is None:
            parts = self.thoughts[index] = []
        return parts

    def other(self, kind: str, event: dict[str, Any]) -> list[StreamChunk]:
        """The chunks of an event other than the deltas the stream reads itself."""
        if kind == "response.refusal.delta":
            # A refusal is what the model answered: its text, as a client shows it.
            return [TextDelta(event["delta"])] if event["delta"] else []
        if kind == "response.output_item.added":
            return self._added(event["output_index"], event["item"])
        if kind == "response.output_item.done":
            return self._done(event["output_index"], event["item"])
        if kind == "response.reasoning_summary_part.added":
            parts = self.thought(event["output_index"])
            if parts and event.get("summary_index"):  # a later part: a paragraph of its own
                parts.append("\n\n")
                return [ReasoningDelta("\n\n")]
            return []
        if kind == "response.completed" or kind == "response.incomplete":
            out = self._close()
            response = event["response"]
            self.ended = True
            self.usage = _usage(response.get("usage"))
            if kind == "response.completed":
                self.finish = "tool_calls" if self.called else "stop"
            else:
                details = response.get("incomplete_details") or {}
                filtered = details.get("reason") == "content_filter"
                self.finish = "content_filter" if filtered else "length"
            return out
        if kind == "response.failed" or kind == "error":
            # openai-python's `response_error_event.py` has the error's fields in the event;
            # some servers nest them in an `error` object, as Chat Completions streams do.
            error = event["response"].get("error") if kind == "response.failed" else event
            if isinstance(error, dict) and isinstance(error.get("error"), dict):
                error = error["error"]
            self.ended = True
            self.error = error if isinstance(error, dict) else {}
        return []  # created, in_progress, content parts, the `.done`s of what was streamed

    def _added(self, index: int, item: dict[str, Any]) -> list[StreamChunk]:
        kind = item.get("type")
        if kind == "function_call":
            call = self.calls[index] = _Call(item["call_id"], item["name"])
            out: list[StreamChunk] = [ToolCallStart(call.id, call.name)]
            if arguments := item.get("arguments"):  # servers that send them whole here
                call.parts.append(arguments)
                out.append(ToolCallDelta(call.id, arguments))
            return out
        if kind == "reasoning":
            self.thoughts.setdefault(index, [])
        return []

    def _done(self, index: int, item: dict[str, Any]) -> list[StreamChunk]:
        kind = item.get("type")
        if kind == "custom_tool_call":  # its input whole: the encoder streams it so
            self.called = True
            return whole_call(custom_call(item, item["call_id"], f"output.{index}"))
        if kind == "function_call":
            self.called = True
            call = self.calls.pop(index, None)
            if call is None:  # never added: it came whole
                return whole_call(ToolCall(item["call_id"], item["name"], item["arguments"]))
            arguments = item.get("arguments")
            if not isinstance(arguments, str):
                arguments = "".join(call.parts)
            return [ToolCallEnd(ToolCall(call.id, call.name, arguments))]
        if kind != "reasoning":
            return []
        out: list[StreamChunk] = []
        parts = self.thoughts.pop(index, None)
        if parts:
            text = "".join(parts)
        else:  # no deltas: the item's own text, sent as one
            text = "\n\n".join(
                s["text"]
                for key in ("summary", "content")
                for s in item.get(key) or ()
                if isinstance(s, dict) and isinstance(s.get("text"), str) and s["text"]
            )
            if text:
                out.append(ReasoningDelta(text))
        encrypted = item.get("encrypted_content")
        signature = tag_signature(self.name, encrypted) if encrypted else None
        if text or signature:
            out.append(ReasoningEnd(Reasoning(text, signature)))
        return out

    def _close(self) -> list[StreamChunk]:
        """The end of every item still open when the response ends (cut by max tokens)."""
        out: list[StreamChunk] = []
        for parts in self.thoughts.values():
            if parts:
                out.append(ReasoningEnd(Reasoning("".join(parts))))
        for call in self.calls.values():
            self.called = True
            out.append(ToolCallEnd(ToolCall(call.id, call.name, "".join(call.parts))))
        self.thoughts.clear()
        self.calls.clear()
        return out


def _usage(usage: Any) -> Usage | None:
    """A Response's `usage` (openai-python's `types/responses/response_usage.py`)."""
    if not isinstance(usage, dict):
        return None
    inputs = usage.get("input_tokens_details") or {}
    outputs = usage.get("output_tokens_details") or {}
    return Usage(
        int(usage.get("input_tokens") or 0),
        int(usage.get("output_tokens") or 0),
        reasoning_tokens=outputs.get("reasoning_tokens"),
        cached_input_tokens=inputs.get("cached_tokens"),
        cache_creation_input_tokens=inputs.get("cache_write_tokens"),
    )
