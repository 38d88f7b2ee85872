"""A stream's content as blocks one after another, for the protocols whose answer is a list of
blocks, each begun, streamed and ended before the next one begins: Anthropic's content blocks
(`content_block_start`, `_delta`, `_stop`), the OpenAI Responses API's output items
(`output_item.added`, deltas, `output_item.done`).

Providers' chunks need not come that way: parallel tool calls may stream their argument
fragments interleaved (OpenAI's chunks carry several calls by index), and text may come while a
call is still open. `Blocks` turns them into sequential blocks: the block that is open streams
as its chunks arrive, never held back; a block that begins while another is open waits, its
pieces kept, and is replayed whole when its turn comes (after the open one ends). A text block
has no end of its own: it ends when another block begins.

Reasoning blocks are text (`ReasoningDelta`s) then the whole block (`ReasoningEnd`, with the
signature a provider needs back); a lone `ReasoningEnd` is a block that came whole (a redacted
block, or a signature with no text), and `Begin.whole` says so, so that a protocol that must
say at the start what kind of block it is (Anthropic's `redacted_thinking`) can.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from streamfn.chunks import (
    Delta,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from streamfn.content import Reasoning, ToolCall

Kind: TypeAlias = Literal["text", "reasoning", "tool_call"]


@dataclass(frozen=True, slots=True)
class Begin:
    """Block `index` (counted from 0) begins. A tool call's `id` and `name`; `whole` for a
    reasoning block that came whole (its text follows as pieces, as for any block)."""

    index: int
    kind: Kind
    id: str = ""
    name: str = ""
    whole: Reasoning | None = None


@dataclass(frozen=True, slots=True)
class Piece:
    """A piece of block `index`: text, reasoning text, or a fragment of a call's arguments."""

    index: int
    kind: Kind
    text: str


@dataclass(frozen=True, slots=True)
class End:
    """Block `index` ends: a reasoning block with the whole block (signature, redacted data),
    a tool call with the whole call, as the provider gave them (None when the stream ended
    without them: cut short)."""

    index: int
    kind: Kind
    reasoning: Reasoning | None = None
    call: ToolCall | None = None


BlockEvent: TypeAlias = Begin | Piece | End


@dataclass(slots=True)
class _Block:
    kind: Kind
    id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)  # while it waits
    ended: bool = False
    reasoning: Reasoning | None = None
    call: ToolCall | None = None
    whole: Reasoning | None = None
    index: int = -1  # once begun


class Blocks:
    """One stream's blocks: `feed` each delta, `finish` at the end (closing what is open and
    replaying what waits)."""

    def __init__(self) -> None:
        self._open: _Block | None = None  # begun, not ended: its pieces go out as they come
        self._waiting: deque[_Block] = deque()  # behind the open one; empty when it is text
        self._count = 0

    def feed(self, chunk: Delta) -> list[BlockEvent]:
        out: list[BlockEvent] = []
        opened = self._open
        match chunk:
            case TextDelta(text=text):
                if opened is not None and opened.kind == "text":
                    out.append(Piece(opened.index, "text", text))
                elif self._waiting and self._waiting[-1].kind == "text":
                    self._waiting[-1].pieces.append(text)
                else:
                    self._add(_Block("text", pieces=[text]), out)
            case ReasoningDelta(text=text):
                block = self._unended("reasoning")
                if block is None:
                    self._add(_Block("reasoning", pieces=[text]), out)
                elif block is opened:
                    out.append(Piece(block.index, "reasoning", text))
                else:
                    block.pieces.append(text)
            case ReasoningEnd(block=whole):
                block = self._unended("reasoning")
                if block is None:
                    pieces = [whole.text] if whole.text else []
                    self._add(_Block("reasoning", pieces=pieces, whole=whole), out, ended=whole)
                elif block is opened:
                    out.append(End(block.index, "reasoning", reasoning=whole))
                    self._open = None
                    self._next(out)
                else:
                    block.ended, block.reasoning = True, whole
            case ToolCallStart(id=id, name=name):
                self._add(_Block("tool_call", id=id, name=name), out)
            case ToolCallDelta(id=id, arguments=arguments):
                if opened is not None and opened.kind == "tool_call" and opened.id == id:
                    out.append(Piece(opened.index, "tool_call", arguments))
                elif (block := self._call(id)) is not None:
                    block.pieces.append(arguments)
            case ToolCallEnd(call=call):
                if opened is not None and opened.kind == "tool_call" and opened.id == call.id:
                    out.append(End(opened.index, "tool_call", call=call))
                    self._open = None
                    self._next(out)
                elif (block := self._call(call.id)) is not None:
                    block.ended, block.call = True, call
                else:  # a call that came whole, never started
                    pieces = [call.arguments] if call.arguments else []
                    block = _Block("tool_call", id=call.id, name=call.name, pieces=pieces)
                    self._add(block, out, call=call)
        return out

    @property
    def idle(self) -> bool:
        """Nothing is open or waiting: `finish` would add nothing."""
        return self._open is None and not self._waiting

    def finish(self) -> list[BlockEvent]:
        """Close the open block and replay every waiting one, closed too."""
        out: list[BlockEvent] = []
        if self._open is not None:
            block, self._open = self._open, None
            out.append(End(block.index, block.kind))
        while self._waiting:
            block = self._waiting.popleft()
            self._begin(block, out)
            self._open = None
            out.append(End(block.index, block.kind, block.reasoning, block.call))
        return out

    def _unended(self, kind: Kind) -> _Block | None:
        """The block of `kind` that has begun arriving and not ended (reasoning: one at most)."""
        for block in reversed(self._waiting):
            if block.kind == kind and not block.ended:
                return block
        opened = self._open
        return opened if opened is not None and opened.kind == kind else None

    def _call(self, id: str) -> _Block | None:
        return next((b for b in self._waiting if b.kind == "tool_call" and b.id == id), None)

    def _add(
        self,
        block: _Block,
        out: list[BlockEvent],
        *,
        ended: Reasoning | None = None,
        call: ToolCall | None = None,
    ) -> None:
        """A new block: it begins now if nothing is open but text (which it ends), else it
        waits. `ended`/`call`: it came whole, and ends as soon as it has begun."""
        if ended is not None or call is not None:
            block.ended, block.reasoning, block.call = True, ended, call
        opened = self._open
        if opened is not None and opened.kind != "text":
            self._waiting.append(block)
            return
        if opened is not None:
            out.append(End(opened.index, "text"))
            self._open = None
        self._waiting.append(block)
        self._next(out)

    def _next(self, out: list[BlockEvent]) -> None:
        """Begin the waiting blocks in turn, until one stays open (or none waits)."""
        while self._waiting:
            block = self._waiting.popleft()
            self._begin(block, out)
            text_followed = block.kind == "text" and bool(self._waiting)
            if not block.ended and not text_followed:
                return
            out.append(End(block.index, block.kind, block.reasoning, block.call))
            self._open = None

    def _begin(self, block: _Block, out: list[BlockEvent]) -> None:
        block.index = self._count
        self._count += 1
        out.append(Begin(block.index, block.kind, block.id, block.name, block.whole))
        out.extend(Piece(block.index, block.kind, p) for p in block.pieces)
        block.pieces = []
        self._open = block
