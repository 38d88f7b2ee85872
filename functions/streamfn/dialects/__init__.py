"""Dialects: one module per client protocol. Each parses its protocol's request body into the
one `ChatRequest` and turns `StreamChunk`s into that protocol's events; no protocol logic lives
anywhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event before framing: its type (None for an unnamed `message` event)
    and its data."""

    name: str | None
    data: str


def dumps(value: object) -> str:
    """Compact JSON, non-ASCII kept as is: the form of every JSON event."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
