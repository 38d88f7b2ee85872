"""A fake OpenAI Responses API: `POST /v1/responses` streamed as OpenAI streams it, and what
the real API refuses of a stateless request (`store: false`).

A Starlette app, served by a real uvicorn (the `serve` fixture), that records every request
and answers each with the next of its scripted answers (the last one repeats): a stream, or an
error status. Streams are written from OpenAI's format, not from streamfn's output: each event
an `event:` line equal to its `type` and one compact JSON `data:` line, numbered by
`sequence_number` from 0 (openai-python's `types/responses/response_stream_event.py`), with the
fields of each event's type in `types/responses/`:

- `response.created`, `response.in_progress` (`response_created_event.py`,
  `response_in_progress_event.py`): the Response object (`response.py`) in progress;
- a message: `output_item.added` (`response_output_item_added_event.py`),
  `content_part.added`, `output_text.delta`s (`response_text_delta_event.py`, with the
  `obfuscation` padding the API adds by default: `response_create_params.py`,
  `StreamOptions.include_obfuscation`), `output_text.done`, `content_part.done`,
  `output_item.done` (`response_output_message.py`);
- a function call: `output_item.added` (arguments empty), `function_call_arguments.delta`s,
  `function_call_arguments.done`, `output_item.done` (`response_function_tool_call.py`);
- reasoning: `output_item.added` (`response_reasoning_item.py`), per summary part
  `reasoning_summary_part.added`, `reasoning_summary_text.delta`s and `.done`,
  `reasoning_summary_part.done`, then `output_item.done` with the whole summary and the
  `encrypted_content` the client is to send back;
- then `response.completed` (usage, `response_usage.py`: cached and reasoning tokens),
  `response.incomplete` (`incomplete_details.reason`), `response.failed` (`error`,
  `response_error.py`), or an `error` event (`response_error_event.py`).

Refused as the API refuses them: a wrong key (401), an input item whose `id` is not one it
issued (404: nothing is kept with `store: false`), a reasoning item whose `encrypted_content`
it did not issue (400), a `previous_response_id` (400: nothing is stored to chain from).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.wire import SECRET

MODEL = "gpt-test-model"
PATH = "/v1/responses"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Status:
    """An error status before any stream: OpenAI's error object, and its headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(
    status: int, message: str, kind: str, code: str | None, param: str | None = None, **headers: str
) -> Status:
    return Status(
        status,
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        headers,
    )


# A 429 as OpenAI answers one, with its rate-limit headers.
RATE_LIMITED = error(
    429,
    "Rate limit reached for gpt-test-model in organization org-test on tokens per min (TPM): "
    "Limit 30000, Used 30000, Requested 512. Please try again in 1.024s.",
    "tokens",
    "rate_limit_exceeded",
    **{
        "retry-after": "2",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1.024s",
    },
)


@dataclass
class Stream:
    """A scripted stream's events, and the item ids and encrypted reasoning it issues."""

    events: list[bytes]
    ids: set[str]
    encrypted: set[str]


class Transcript:
    """Builds one Responses stream, item by item, then its end.

    `Transcript().reasoning([["**Plan**"], ["Then", " act."]], "gAAA...").message("Hi", "!")
    .completed(usage(12, 5))`: each item's events in order, its ids OpenAI's form."""

    _ids = itertools.count(1)

    def __init__(self, model: str = MODEL) -> None:
        self.id = f"resp_{self._hex()}"
        self.model = model
        self.events: list[bytes] = []
        self.output: list[dict[str, Any]] = []
        self.encrypted: set[str] = set()
        self._seq = 0
        self._started = False
        self._padding = itertools.cycle(["Qx", "b7Yk", "", "m", "Zr0Pq"])

    def _hex(self) -> str:
        return f"68c1f0a2b3d48190{next(self._ids):032x}"

    def _event(self, type: str, **fields: Any) -> None:
        if not self._started:
            self._started = True
            for first in ("response.created", "response.in_progress"):
                self._emit(first, response=self._response("in_progress", []))
        self._emit(type, **fields)

    def _emit(self, type: str, **fields: Any) -> None:
        data = _json({"type": type, "sequence_number": self._seq, **fields})
        self._seq += 1
        self.events.append(f"event: {type}\ndata: {data}\n\n".encode())

    def _delta(self, type: str, delta: str, **where: Any) -> None:
        self._event(type, **where, delta=delta, obfuscation=next(self._padding))

    def _response(self, status: str, output: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": 1758000000,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "max_output_tokens": None,
            "max_tool_calls": None,
            "model": f"{self.model}-2025-08-07",
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "prompt_cache_key": None,
            "reasoning": {"effort": "low", "summary": "auto"},
            "safety_identifier": None,
            "service_tier": "default",
            "store": False,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": None,
            "user": None,
            "metadata": {},
            **more,
        }

    def _added(self, item: dict[str, Any]) -> int:
        index = len(self.output)
        self._event("response.output_item.added", output_index=index, item=item)
        return index

    def _done(self, index: int, item: dict[str, Any]) -> None:
        self.output.append(item)
        self._event("response.output_item.done", output_index=index, item=item)

    def message(self, *deltas: str, status: str | None = "completed") -> Transcript:
        """An assistant message streamed as `deltas`, done with `status` (`incomplete`: cut by
        max_output_tokens); None leaves it open (a stream that fails in the middle of it)."""
        id = f"msg_{self._hex()}"
        item = {
            "id": id,
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        }
        index = self._added(item)
        where = {"item_id": id, "output_index": index, "content_index": 0}
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        self._event("response.content_part.added", **where, part=empty)
        for delta in deltas:
            self._delta("response.output_text.delta", delta, **where, logprobs=[])
        if status is None:
            return self
        text = "".join(deltas)
        part = {**empty, "text": text}
        self._event("response.output_text.done", **where, text=text, logprobs=[])
        self._event("response.content_part.done", **where, part=part)
        self._done(index, {**item, "status": status, "content": [part]})
        return self

    def call(self, call_id: str, name: str, *fragments: str) -> Transcript:
        """A function call whose arguments stream as `fragments`."""
        item = {"type": "function_call", "call_id": call_id, "name": name}
        return self._call("fc", item, "arguments", "function_call_arguments", fragments)

    def custom_call(self, call_id: str, name: str, *fragments: str) -> Transcript:
        """A custom (free-form) tool's call whose input streams as `fragments`
        (`response.custom_tool_call_input.delta`s, then `.done`)."""
        item = {"type": "custom_tool_call", "call_id": call_id, "name": name}
        return self._call("ctc", item, "input", "custom_tool_call_input", fragments)

    def _call(
        self, prefix: str, item: dict[str, Any], field: str, events: str, fragments: tuple[str, ...]
    ) -> Transcript:
        """A call `item` whose `field` streams as `fragments`, in `response.<events>.delta`s
        and a `.done`."""
        id = f"{prefix}_{self._hex()}"
        item = {"id": id, **item, "status": "in_progress", field: ""}
        index = self._added(item)
        for fragment in fragments:
            self._delta(f"response.{events}.delta", fragment, item_id=id, output_index=index)
        whole = "".join(fragments)
        self._event(f"response.{events}.done", item_id=id, output_index=index, **{field: whole})
        self._done(index, {**item, "status": "completed", field: whole})
        return self

    def reasoning(self, parts: list[list[str]], encrypted: str) -> Transcript:
        """A reasoning item: its summary's `parts`, each streamed as its deltas, and the
        `encrypted_content` it carries (in `added` too, as the API sends it, maybe partial)."""
        id = f"rs_{self._hex()}"
        self.encrypted.add(encrypted)
        item: dict[str, Any] = {
            "id": id,
            "type": "reasoning",
            "summary": [],
            "encrypted_content": encrypted[:12],
        }
        index = self._added(item)
        summary = []
        for n, deltas in enumerate(parts):
            where = {"item_id": id, "output_index": index, "summary_index": n}
            part = {"type": "summary_text", "text": ""}
            self._event("response.reasoning_summary_part.added", **where, part=part)
            for delta in deltas:
                self._delta("response.reasoning_summary_text.delta", delta, **where)
            text = "".join(deltas)
            self._event("response.reasoning_summary_text.done", **where, text=text)
            part = {"type": "summary_text", "text": text}
            self._event("response.reasoning_summary_part.done", **where, part=part)
            summary.append(part)
        self._done(index, {**item, "summary": summary, "encrypted_content": encrypted})
        return self

    def _stream(self) -> Stream:
        ids = {item["id"] for item in self.output}
        return Stream(self.events, ids, self.encrypted)

    def completed(self, usage: dict[str, Any]) -> Stream:
        done = self._response("completed", self.output, usage=usage, completed_at=1758000001)
        self._event("response.completed", response=done)
        return self._stream()

    def incomplete(self, reason: str, usage: dict[str, Any]) -> Stream:
        cut = self._response(
            "incomplete", self.output, usage=usage, incomplete_details={"reason": reason}
        )
        self._event("response.incomplete", response=cut)
        return self._stream()

    def failed(self, code: str, message: str) -> Stream:
        error = {"code": code, "message": message}
        self._event("response.failed", response=self._response("failed", self.output, error=error))
        return self._stream()

    def error(self, code: str, message: str) -> Stream:
        """An `error` event, which ends the stream."""
        self._event("error", code=code, message=message, param=None)
        return self._stream()


def usage(
    input: int, output: int, *, cached: int = 0, reasoning: int = 0, cache_write: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input + output,
    }


Answer = Stream | Status


class FakeResponses:
    """The fake: `app` to serve; `requests`, what it was sent. An answer may be a function of
    the request (the request's body), for a test that answers by what it is sent."""

    def __init__(self, *answers: Answer | Callable[[dict[str, Any]], Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[Received] = []
        self.ids: set[str] = set()  # issued: the items it answered with
        self.encrypted: set[str] = set()
        self.app = Starlette(routes=[Route(PATH, self._create, methods=["POST"])])

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(Received(request.url.path, dict(request.headers), body))
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return _status(
                error(
                    401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                )
            )
        if (refused := self._refusal(body)) is not None:
            return _status(refused)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if callable(answer):
            answer = answer(body)
        if isinstance(answer, Status):
            return _status(answer)
        self.ids |= answer.ids
        self.encrypted |= answer.encrypted

        async def events() -> AsyncIterator[bytes]:
            for event in answer.events:
                yield event

        return StreamingResponse(events(), media_type="text/event-stream; charset=utf-8")

    def _refusal(self, body: dict[str, Any]) -> Status | None:
        """What the API refuses of a request that keeps nothing on its side."""
        if body.get("previous_response_id") is not None and body.get("store") is False:
            return error(
                400,
                "Previous response cannot be used for this organization due to Zero Data "
                "Retention.",
                "invalid_request_error",
                None,
                "previous_response_id",
            )
        items = body.get("input")
        for i, item in enumerate(items if isinstance(items, list) else []):
            id = item.get("id")
            if id is not None and id not in self.ids:
                return error(
                    404,
                    f"Item with id '{id}' not found. Items are not persisted when `store` is "
                    "set to false. Try again with `store` set to true, or remove this item from "
                    "your input.",
                    "invalid_request_error",
                    None,
                    "input",
                )
            encrypted = item.get("encrypted_content")
            if item.get("type") == "reasoning" and encrypted not in self.encrypted:
                return error(
                    400,
                    f"The encrypted content for item input[{i}] could not be verified. "
                    "Reason: Encrypted content could not be decrypted or parsed.",
                    "invalid_request_error",
                    "invalid_encrypted_content",
                )
        return None


def _status(status: Status) -> Response:
    return JSONResponse(status.body, status.status, headers=status.headers)
