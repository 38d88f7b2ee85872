"""Dialects turn `StreamChunk`s into the events a client reads.

`native` is streamfn's own vocabulary, compatible with the seed design's JavaScript client:

- `token`: data is the raw text of one delta
- `usage`: data is JSON `{"input_tokens", "output_tokens", "estimated"}`
- `done`: data is the finish reason (stop, length, tool_calls, content_filter)
- `error`: data is JSON `{"type", "message", "retryable"}`; nothing follows it

A successful stream is `token`* `usage` `done`; a failed one is `token`* `error`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import assert_never

from streamfn.chunks import Finish, StreamChunk, StreamError, TextDelta


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event before framing: its type and its data."""

    name: str
    data: str


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_body(error: StreamError) -> dict[str, object]:
    """The JSON describing an error, in an `error` event and in an HTTP error response."""
    return {"type": error.type, "message": error.message, "retryable": error.retryable}


def native(chunk: StreamChunk) -> tuple[Event, ...]:
    match chunk:
        case TextDelta(text=text):
            return (Event("token", text),)
        case Finish(reason=reason, usage=usage):
            return (
                Event(
                    "usage",
                    _json(
                        {
                            "input_tokens": usage.input_tokens,
                            "output_tokens": usage.output_tokens,
                            "estimated": usage.estimated,
                        }
                    ),
                ),
                Event("done", reason),
            )
        case StreamError():
            return (Event("error", _json(error_body(chunk))),)
        case _:
            assert_never(chunk)
