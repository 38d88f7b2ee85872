"""Gemini's stream, one `GenerateContentResponse` chunk at a time, as `StreamChunk`s.

Parts (google/genai/types.py, `Part`): `text`; `thought: true` with `text`, a piece of the
model's thought summary (streamed only with `includeThoughts`); `functionCall {name, args, id?}`,
whole in one chunk (the Gemini API does not stream a call's arguments). Any part may carry a
`thoughtSignature`: a call's is kept on the `ToolCall`, a thought part's closes its run of
thoughts as a signed `Reasoning` block, a text part's becomes a signed block of no text. Gemini 3
often sends the last one on a part of empty text, in the last chunk
(https://ai.google.dev/gemini-api/docs/thought-signatures, "Streaming"). Signatures leave here
tagged `gemini:` (`content.tag_signature`), so that no other provider is sent one.

`finishReason` (FinishReason in google/genai/types.py) comes on the last candidate chunk; a
response with calls still says STOP. `usageMetadata`: `promptTokenCount` (which includes
`cachedContentTokenCount`) and `toolUsePromptTokenCount` are the input, `candidatesTokenCount`
and `thoughtsTokenCount` the output.
"""

from __future__ import annotations

from typing import Any

import orjson

from streamfn.chunks import (
    Finish,
    FinishReason,
    ReasoningEnd,
    StreamChunk,
    StreamError,
    TextDelta,
    Usage,
)
from streamfn.content import Reasoning, ToolCall, tag_signature
from streamfn.providers import upstream
from streamfn.providers.assembly import ReasoningTracker, new_call_id, whole_call
from streamfn.request import ChatRequest

NAME = "gemini"

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    # LANGUAGE, OTHER, NO_IMAGE, IMAGE_OTHER, FINISH_REASON_UNSPECIFIED: the model stopped.
}
# The model produced a call that cannot be run: there is nothing whole to hand the client, so
# it is a failure (retried or handed to a fallback before the first token, like any other).
_CALL_FAILED = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})


class Response:
    """What one stream's chunks have said so far."""

    __slots__ = (
        "blocked",
        "calls",
        "chars",
        "finish",
        "message",
        "reasoning",
        "response_id",
        "usage",
    )

    def __init__(self) -> None:
        self.reasoning = ReasoningTracker()
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.message: str | None = None  # the candidate's finishMessage
        self.blocked: str | None = None  # promptFeedback.blockReason
        self.response_id: str | None = None
        self.calls = 0
        self.chars = 0  # generated, for an estimate when no usage is reported

    @property
    def over(self) -> bool:
        """Whether the answer is whole (what follows is not read)."""
        return self.finish is not None or self.blocked is not None

    def feed(self, chunk: dict[str, Any]) -> list[StreamChunk]:
        """The chunks of one `GenerateContentResponse`."""
        if (usage := chunk.get("usageMetadata")) is not None:
            self.usage = usage
        if self.response_id is None:
            self.response_id = chunk.get("responseId")
        feedback = chunk.get("promptFeedback")
        if feedback and feedback.get("blockReason"):
            self.blocked = str(feedback["blockReason"])
        candidates = chunk.get("candidates")
        if not candidates:
            return []
        candidate = candidates[0]
        out: list[StreamChunk] = []
        content = candidate.get("content")
        for part in (content.get("parts") if content else None) or ():
            out += self._part(part)
        if (reason := candidate.get("finishReason")) is not None:
            self.finish = str(reason)
            self.message = candidate.get("finishMessage")
            out += self.reasoning.close()
        return out

    def _part(self, part: dict[str, Any]) -> list[StreamChunk]:
        text = part.get("text")
        signature = part.get("thoughtSignature") or None
        if part.get("thought"):
            out = self.reasoning.add(text) if text else []
            self.chars += len(text or "")
            if signature is not None:
                out += self.reasoning.close(tag_signature(NAME, signature))
            return out
        call = part.get("functionCall")
        if call is not None:
            name = call.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("a functionCall without a name")
            args = call.get("args")
            arguments = orjson.dumps(args).decode() if args is not None else "{}"
            self.chars += len(arguments)
            self.calls += 1
            made = ToolCall(str(call.get("id") or self._call_id()), name, arguments, signature)
            return [*self.reasoning.close(), *whole_call(made)]
        if text is None:
            return []  # inline data, executable code and the like: not relayed
        out = self.reasoning.close()
        if text:
            self.chars += len(text)
            out.append(TextDelta(text))
        if signature is not None:
            out.append(ReasoningEnd(Reasoning(signature=tag_signature(NAME, signature))))
        return out

    def _call_id(self) -> str:
        """An id for a call Gemini gave none: the response's, numbered, so that the events of
        a stream (and a replay of them) name it alike; random without a response id."""
        if self.response_id:
            return f"call_{self.response_id}_{self.calls}"
        return new_call_id()

    def final(self, request: ChatRequest) -> StreamChunk:
        """The last chunk, once the body has ended."""
        if self.finish is None and self.blocked is not None:
            return Finish("content_filter", self._usage(request))
        if self.finish is None:
            return upstream.truncated(NAME)
        if self.finish in _CALL_FAILED:
            said = f": {self.message}" if self.message else ""
            return StreamError(
                "upstream_error", f"{NAME} ended with {self.finish}{said}", retryable=True
            )
        reason = _FINISH.get(self.finish, "stop")
        if reason == "stop" and self.calls:
            reason = "tool_calls"
        return Finish(reason, self._usage(request))

    def _usage(self, request: ChatRequest) -> Usage:
        meta = self.usage
        if not meta:
            return Usage.estimate(request.prompt_text(), self.chars)
        thoughts = meta.get("thoughtsTokenCount")
        return Usage(
            int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0),
            int(meta.get("candidatesTokenCount") or 0) + int(thoughts or 0),
            reasoning_tokens=thoughts,
            cached_input_tokens=meta.get("cachedContentTokenCount"),
        )
