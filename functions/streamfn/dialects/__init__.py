"""Dialects: one module per client protocol. Each parses its protocol's request body into the
one `ChatRequest` and turns `StreamChunk`s into that protocol's events; no protocol logic lives
anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

from streamfn.chunks import StreamChunk

if TYPE_CHECKING:
    from starlette.responses import Response


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event before framing: its type (None for an unnamed `message` event)
    and its data."""

    name: str | None
    data: str


def dumps(value: object) -> str:
    """Compact JSON, non-ASCII kept as is: the form of every JSON event."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Dialect(Protocol):
    """A client protocol's shapes: its error responses, the headers of its streams, and their
    keepalive (None: an SSE comment, which every protocol's clients skip; Anthropic's streams
    send `ping` events)."""

    stream_headers: Mapping[str, str]
    keepalive: Event | None

    def error(
        self,
        status: int,
        type: str,
        message: str,
        *,
        param: str | None = None,
        retryable: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An HTTP error response in the protocol's own shape."""
        ...


Encode: TypeAlias = Callable[[StreamChunk], Iterable[Event]]
"""One stream's encoder: the events of each chunk in turn (it may keep state between them, and
may add events before the first chunk's and after the final one's)."""
