"""Turning a provider's pieces of tool calls and reasoning into well-formed chunks.

Each provider's wire delivers these differently (fragments keyed by index, whole objects, blocks
with start and stop events); what leaves a provider is always the same: `ToolCallStart`, its
`ToolCallDelta`s, one `ToolCallEnd`; `ReasoningDelta`s closed by one `ReasoningEnd`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from streamfn.chunks import (
    ReasoningDelta,
    ReasoningEnd,
    StreamChunk,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from streamfn.content import Reasoning, ToolCall


def new_call_id() -> str:
    """An id for a call whose provider gave none (OpenAI's form, which every client accepts)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def whole_call(call: ToolCall) -> list[StreamChunk]:
    """The chunks of a call that arrived whole (Ollama sends calls as complete objects)."""
    chunks: list[StreamChunk] = [ToolCallStart(call.id, call.name)]
    if call.arguments:
        chunks.append(ToolCallDelta(call.id, call.arguments))
    chunks.append(ToolCallEnd(call))
    return chunks


@dataclass
class _Slot:
    id: str
    name: str
    parts: list[str] = field(default_factory=list)
    started: bool = False


class ToolCallAssembler:
    """Joins OpenAI-style `delta.tool_calls[]` fragments into calls.

    In the OpenAI wire a call's `id` and `name` come in its first fragment and later fragments
    carry only `index` and argument text. Real servers deviate, so a fragment is matched to its
    call by index *and* id together:

    - a non-empty id names its call: a new id is a new call even at an index already in use
      (Ollama's compatible endpoint sends index 0 for every parallel call; others collide);
    - an id restated on later fragments, or an empty id, continues the call;
    - without an id, the index picks the call; a fragment with no index either continues the
      latest call (a server that omits `index` has one call in flight at a time);
    - a different name at the same index without an id begins a new call.
    """

    def __init__(self) -> None:
        self._slots: list[_Slot] = []
        self._by_id: dict[str, _Slot] = {}
        self._by_index: dict[int | None, _Slot] = {}

    def __bool__(self) -> bool:
        return bool(self._slots)

    def feed(
        self, index: int | None, id: str | None, name: str | None, arguments: str | None
    ) -> list[StreamChunk]:
        slot = self._by_id.get(id) if id else None
        if slot is None and not id:
            current = self._by_index.get(index)
            if current is None and index is None and self._slots:
                current = self._slots[-1]
            if current is not None and not (name and current.name and name != current.name):
                slot = current
        if slot is None:
            slot = _Slot(id or new_call_id(), "")
            self._slots.append(slot)
            self._by_id[slot.id] = slot
        self._by_index[index] = slot
        chunks: list[StreamChunk] = []
        if name and not slot.name:
            slot.name = name
        if arguments:
            slot.parts.append(arguments)
        if not slot.started and slot.name:
            # Fragments of arguments that came before the name are sent with the start.
            slot.started = True
            chunks.append(ToolCallStart(slot.id, slot.name))
            if slot.parts:
                chunks.append(ToolCallDelta(slot.id, "".join(slot.parts)))
        elif slot.started and arguments:
            chunks.append(ToolCallDelta(slot.id, arguments))
        return chunks

    def end(self) -> list[StreamChunk]:
        """The end of every call, in the order they began. A call that never got a name is not
        a call a client could run, and is left out."""
        slots, self._slots = self._slots, []
        self._by_id.clear()
        self._by_index.clear()
        return [ToolCallEnd(ToolCall(s.id, s.name, "".join(s.parts))) for s in slots if s.started]


class ReasoningTracker:
    """The open reasoning block of a stream whose reasoning arrives as plain deltas."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def add(self, text: str) -> list[StreamChunk]:
        if not text:
            return []
        self._parts.append(text)
        return [ReasoningDelta(text)]

    def close(self, signature: str | None = None) -> list[StreamChunk]:
        """The open block's end, if one is open (or a signature came for it)."""
        if not self._parts and signature is None:
            return []
        text, self._parts = "".join(self._parts), []
        return [ReasoningEnd(Reasoning(text=text, signature=signature))]
