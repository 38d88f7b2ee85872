"""The OpenAI Responses API: `POST /v1/responses` (streamed or not), `GET` and `DELETE
/v1/responses/{id}`, over every provider.

Requests are parsed in `responses_request`. A stream is the API's events, each with its
`event:` line equal to its `type` and a `sequence_number` counted from 0 (openai-python's
`types/responses/response_stream_event.py`; the Open Responses specification): `response.created`
and `response.in_progress`, then one output item after another (`dialects.blocks`: parallel
calls whose fragments arrive interleaved become sequential items; the open item streams as it
arrives), then `response.completed`, or `response.incomplete` (max tokens, a content filter), or
`error` and `response.failed`. Items:

- a message: `output_item.added`, `content_part.added` (an `output_text` part),
  `output_text.delta`s, `output_text.done`, `content_part.done`, `output_item.done`;
- reasoning: `output_item.added`, then its text as a summary (`reasoning_summary_part.added`,
  `reasoning_summary_text.delta`s and `.done`, `reasoning_summary_part.done`: summary events,
  as the Open Responses suite accepts them and Codex shows them), `output_item.done`, whose
  `encrypted_content` carries the block's signature (or redacted data) when the client keeps
  the conversation (`store: false`) or asks for it (`include: ["reasoning.encrypted_content"]`);
- a function call: `output_item.added`, `function_call_arguments.delta`s (the arguments' JSON
  text as its fragments come), `function_call_arguments.done`, `output_item.done`;
- a custom tool's call: `output_item.added`, `custom_tool_call_input.delta` and `.done`,
  `output_item.done` (`responses_custom`).

The final Response object, in the last event and from `GET`, is whole: output, usage (with
`input_tokens_details.cached_tokens` and `output_tokens_details.reasoning_tokens`), status,
`created_at`, `completed_at`. Ids: the response is `resp_<request id>`, its items
`msg_`/`rs_`/`fc_`/`ctc_<request id>_<n>`, so that an item's id names the stored response it is in
(`response_of`). Errors before the stream are OpenAI's, as on `/v1/chat/completions`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any, Literal, assert_never

from streamfn.chunks import (
    Final,
    Finish,
    ReasoningEnd,
    StreamChunk,
    StreamError,
    TextDelta,
    ToolCallEnd,
    Usage,
)
from streamfn.content import Reasoning, ToolCall
from streamfn.dialects import Event, dumps
from streamfn.dialects.blocks import Begin, BlockEvent, Blocks, End, Kind, Piece
from streamfn.dialects.openai import DIALECT
from streamfn.dialects.responses_custom import custom_input, custom_names
from streamfn.dialects.responses_request import CALL_SIGNATURE, ResponsesBody, encrypted_content
from streamfn.prices import cost_of
from streamfn.response_ids import response_of
from streamfn.streaming import Completion

__all__ = ["DIALECT", "ResponseEncoder", "ResponsesBody", "complete", "response_of"]

_PREFIXES: Mapping[Kind, str] = {"text": "msg", "reasoning": "rs", "tool_call": "fc"}


def usage_object(usage: Usage) -> dict[str, Any]:
    """The Response's `usage`, with cache writes where the provider reports them
    (`input_tokens_details.cache_write_tokens`) and what the request cost in USD (`cost_usd`,
    null where the model's price is not known)."""
    inputs: dict[str, int] = {"cached_tokens": usage.cached_input_tokens or 0}
    if usage.cache_creation_input_tokens is not None:
        inputs["cache_write_tokens"] = usage.cache_creation_input_tokens
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": inputs,
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "cost_usd": cost_of(usage),
    }


def skeleton(body: ResponsesBody, *, id: str, created_at: float) -> dict[str, Any]:
    """The Response object as it is while in progress: the request's settings echoed, no
    output yet."""
    reasoning = body.reasoning
    return {
        "id": id,
        "object": "response",
        "created_at": int(created_at),
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "model": body.model,
        "output": [],
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": reasoning.summary if reasoning else None,
        },
        "store": body.store,
        "temperature": body.temperature,
        "text": {"format": (body.text.format if body.text else None) or {"type": "text"}},
        "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [],
        "top_p": body.top_p,
        "truncation": "disabled",
        "usage": None,
        "user": None,
    }


def include_encrypted(body: ResponsesBody) -> bool:
    """Whether reasoning items carry `encrypted_content`: when the client keeps the
    conversation, or asks."""
    include = (body.model_extra or {}).get("include")
    return not body.store or (
        isinstance(include, list) and "reasoning.encrypted_content" in include
    )


# streamfn's error types as a failed Response's `error.code` (openai-python's
# `types/responses/response_error.py`).
_CODES = {"rate_limit": "rate_limit_exceeded", "bad_request": "invalid_prompt"}


class _Item:
    """The output item being streamed: its text (or arguments) so far."""

    __slots__ = ("call_id", "custom", "id", "index", "kind", "name", "pieces", "summary", "whole")

    def __copy__(self) -> _Item:
        copied = _Item.__new__(_Item)
        for name in self.__slots__:
            setattr(copied, name, getattr(self, name))
        return copied

    def __deepcopy__(self, memo: dict[int, Any]) -> _Item:
        """A copy whose pieces are its own (a list of strings, copied flat: a stream's will
        copies the open item every page)."""
        copied = copy.copy(self)
        copied.pieces = list(self.pieces)
        return copied

    def __init__(self, begin: Begin, id: str, custom: bool = False) -> None:
        self.id = id
        self.custom = custom  # a call of a custom tool (`responses_custom`)
        self.index = begin.index
        self.kind = begin.kind
        self.name = begin.name
        self.call_id = begin.id
        self.pieces: list[str] = []
        self.summary = False  # a reasoning item's summary part has been added
        self.whole = begin.whole


class ResponseEncoder:
    """One stream's Responses events. `final(chunk)` is the Response object the final
    `chunk` makes, before it is encoded: what is stored, and what its last event carries."""

    def __init__(self, response: dict[str, Any], *, rid: str, encrypted: bool) -> None:
        self._response = response
        self._rid = rid
        self._encrypted = encrypted
        self._seq = 0
        self._started = False
        self._blocks = Blocks()
        self._output: list[dict[str, Any]] = []
        self._open: _Item | None = None
        self._custom = custom_names(response["tools"])
        self._added = 0  # items of this encoder's own (calls' signatures) before the open one

    def _event(self, type: str, body: dict[str, Any]) -> Event:
        data = dumps({"type": type, "sequence_number": self._seq, **body})
        self._seq += 1
        return Event(type, data)

    def _whole(self, type: str, response: dict[str, Any] | str) -> Event:
        """An event carrying the whole Response (or its JSON, made once for several events)."""
        body = response if isinstance(response, str) else dumps(response)
        data = f'{{"type":"{type}","sequence_number":{self._seq},"response":{body}}}'
        self._seq += 1
        return Event(type, data)

    def __call__(self, chunk: StreamChunk) -> list[Event]:
        out: list[Event] = []
        if not self._started:
            self._started = True
            started = dumps(self._response)
            out += [
                self._whole("response.created", started),
                self._whole("response.in_progress", started),
            ]
        match chunk:
            case Finish() | StreamError():
                if isinstance(chunk, Finish):
                    self._items(self._blocks.finish(), out)
                else:
                    error = _error(chunk)
                    out.append(self._event("error", {**error, "param": None}))
                response = self.final(chunk)
                out.append(self._whole(_FINAL_EVENTS[response["status"]], self.shown(response)))
            case _:
                self._items(self._blocks.feed(chunk), out)
        return out

    def shown(self, response: dict[str, Any]) -> dict[str, Any]:
        """`response` as its client sees it: reasoning's `encrypted_content` only if it asked
        (`final`'s, which is kept, has it whenever the provider signed)."""
        if self._encrypted:
            return response
        return {**response, "output": [_unsigned(o) for o in response["output"]]}

    def final(self, chunk: Final) -> dict[str, Any]:
        """The Response object once `chunk` ends the stream, signed reasoning and all, as it is
        stored (`shown` is its client's view). Nothing of this encoder's state changes: the
        items still open are closed in a copy."""
        output = list(self._output)
        if isinstance(chunk, Finish):
            if self._open is not None or not self._blocks.idle:
                scratch = copy.deepcopy(self)
                scratch._items(scratch._blocks.finish(), [])
                output = scratch._output
            status, reason = _STATUS[chunk.reason]
            return {
                **self._response,
                "status": status,
                "completed_at": int(time.time()),
                "incomplete_details": {"reason": reason} if reason else None,
                "output": output,
                "usage": usage_object(chunk.usage),
            }
        failed = {**self._response, "status": "failed", "error": _error(chunk)}
        if chunk.type == "interrupted":
            # A will (`resume.producer`): rewritten with every page of the log, so kept small;
            # the items were streamed, and are in the log before it.
            return {**failed, "instructions": None, "tools": [], "output": []}
        if self._open is not None:
            output.append({**self._item(self._open), "status": "incomplete"})
        return {**failed, "output": output}

    def __deepcopy__(self, memo: dict[int, Any]) -> ResponseEncoder:
        """A copy to go on from apart (a stream's will, `final`): what the copy may change is
        copied; the request's settings and the items already done, never changed, are shared."""
        copied = copy.copy(self)
        copied._blocks = copy.deepcopy(self._blocks, memo)
        copied._output = list(self._output)
        copied._open = copy.deepcopy(self._open, memo)
        return copied

    def _items(self, blocks: list[BlockEvent], out: list[Event]) -> None:
        for event in blocks:
            match event:
                case Piece(text=text):
                    item = self._open
                    assert item is not None
                    item.pieces.append(text)
                    self._piece(item, text, out)
                case Begin(index=index, kind=kind, name=name):
                    custom = kind == "tool_call" and name in self._custom
                    prefix = "ctc" if custom else _PREFIXES[kind]
                    index += self._added
                    item = _Item(event, f"{prefix}_{self._rid}_{index}", custom)
                    item.index = index
                    self._open = item
                    added = {"output_index": index, "item": self._item(item, "in_progress")}
                    out.append(self._event("response.output_item.added", added))
                    if kind == "text":
                        part = {"item_id": item.id, "output_index": index, "content_index": 0}
                        out.append(
                            self._event("response.content_part.added", {**part, "part": _text("")})
                        )
                case End(reasoning=reasoning, call=call):
                    item = self._open
                    assert item is not None
                    self._open = None
                    self._end(item, reasoning, call, out)
                case _:
                    assert_never(event)

    def _piece(self, item: _Item, text: str, out: list[Event]) -> None:
        if item.custom:
            return  # JSON-wrapped until whole: its input goes as one delta when it ends
        if item.kind == "reasoning" and not item.summary:
            item.summary = True
            part = {"type": "summary_text", "text": ""}
            out.append(self._event("response.reasoning_summary_part.added", _summary(item, part)))
        # The deltas are most of a stream's events: written out, not through `dumps`.
        where = f'"sequence_number":{self._seq},"item_id":"{item.id}","output_index":{item.index}'
        self._seq += 1
        if item.kind == "text":
            type = "response.output_text.delta"
            data = f'{where},"content_index":0,"delta":{dumps(text)},"logprobs":[]}}'
        elif item.kind == "tool_call":
            type = "response.function_call_arguments.delta"
            data = f'{where},"delta":{dumps(text)}}}'
        else:
            type = "response.reasoning_summary_text.delta"
            data = f'{where},"summary_index":0,"delta":{dumps(text)}}}'
        out.append(Event(type, f'{{"type":"{type}",{data}'))

    def _end(
        self, item: _Item, reasoning: Reasoning | None, call: ToolCall | None, out: list[Event]
    ) -> None:
        text = "".join(item.pieces)
        where = {"item_id": item.id, "output_index": item.index}
        if item.kind == "text":
            out.append(
                self._event(
                    "response.output_text.done",
                    {**where, "content_index": 0, "text": text, "logprobs": []},
                )
            )
            out.append(
                self._event(
                    "response.content_part.done", {**where, "content_index": 0, "part": _text(text)}
                )
            )
        elif item.kind == "tool_call":
            arguments = call.arguments if call is not None else text
            item.pieces = [arguments]
            if item.custom:
                input = custom_input(arguments)
                if input:
                    delta = {**where, "delta": input}
                    out.append(self._event("response.custom_tool_call_input.delta", delta))
                done = {**where, "input": input}
                out.append(self._event("response.custom_tool_call_input.done", done))
            else:
                done = {**where, "name": item.name, "arguments": arguments or "{}"}
                out.append(self._event("response.function_call_arguments.done", done))
        elif item.summary:
            out.append(
                self._event(
                    "response.reasoning_summary_text.done",
                    {**where, "summary_index": 0, "text": text},
                )
            )
            part = {"type": "summary_text", "text": text}
            out.append(self._event("response.reasoning_summary_part.done", _summary(item, part)))
        if reasoning is not None:
            item.whole = reasoning
        self._done(self._item(item), item.index, out)
        if call is not None and call.signature is not None:
            self._signature(call, item.index + 1, out)

    def _done(self, whole: dict[str, Any], index: int, out: list[Event]) -> None:
        self._output.append(whole)
        shown = whole if self._encrypted else _unsigned(whole)
        out.append(self._event("response.output_item.done", {"output_index": index, "item": shown}))

    def _signature(self, call: ToolCall, index: int, out: list[Event]) -> None:
        """A reasoning item after `call` carrying its signature (`CALL_SIGNATURE`): its client
        sends it back with the call, or the store keeps it, and the provider gets it again."""
        self._added += 1
        added = {"id": f"rs_{self._rid}_{index}", "type": "reasoning", "summary": []}
        out.append(
            self._event("response.output_item.added", {"output_index": index, "item": added})
        )
        signed = {**added, "encrypted_content": f"{CALL_SIGNATURE}{call.id}:{call.signature}"}
        self._done(signed, index, out)

    def _item(
        self, item: _Item, status: Literal["in_progress", "completed"] = "completed"
    ) -> dict[str, Any]:
        """`item` as an output item: empty when just added, whole when done."""
        text = "".join(item.pieces) if status == "completed" else ""
        if item.kind == "text":
            content = [_text(text)] if status == "completed" else []
            return {
                "id": item.id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": content,
            }
        if item.custom:
            return {
                "id": item.id,
                "type": "custom_tool_call",
                "status": status,
                "call_id": item.call_id,
                "name": item.name,
                "input": custom_input(text) if status == "completed" else "",
            }
        if item.kind == "tool_call":
            return {
                "id": item.id,
                "type": "function_call",
                "status": status,
                "call_id": item.call_id,
                "name": item.name,
                "arguments": (text or "{}") if status == "completed" else "",
            }
        out: dict[str, Any] = {"id": item.id, "type": "reasoning", "summary": []}
        if status == "completed" and text:
            out["summary"] = [{"type": "summary_text", "text": text}]
        carried = encrypted_content(item.whole) if item.whole is not None else None
        if status == "completed" and carried is not None:
            out["encrypted_content"] = carried
        return out


def _unsigned(item: dict[str, Any]) -> dict[str, Any]:
    if "encrypted_content" not in item:
        return item
    return {k: v for k, v in item.items() if k != "encrypted_content"}


def _text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _summary(item: _Item, part: dict[str, str]) -> dict[str, Any]:
    return {"item_id": item.id, "output_index": item.index, "summary_index": 0, "part": part}


def _error(chunk: StreamError) -> dict[str, Any]:
    return {"code": _CODES.get(chunk.type, "server_error"), "message": chunk.message}


_STATUS: Mapping[str, tuple[str, str | None]] = {
    "stop": ("completed", None),
    "tool_calls": ("completed", None),
    "length": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
}
_FINAL_EVENTS = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}


def complete(encoder: ResponseEncoder, result: Completion) -> dict[str, Any]:
    """The Response object of a whole answer, for a request that did not ask for a stream:
    `result` fed through `encoder` as the chunks it was made of, so that a response has the
    same items streamed or not."""
    for block in result.reasoning:
        encoder(ReasoningEnd(block))
    if result.text:
        encoder(TextDelta(result.text))
    for call in result.tool_calls:
        encoder(ToolCallEnd(call))
    return encoder.final(result.finish)
