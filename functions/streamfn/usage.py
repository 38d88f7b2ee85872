"""Usage records: what one request cost, known only once its stream has ended.

A `Tally` watches a guarded chunk stream go by and, once the response has been sent, becomes a
`UsageRecord`. Stores (`streamfn.stores`) keep records; they implement `UsageStore`.

A record is opened when the request reaches a provider (`Tally.opening`, outcome `interrupted`,
status 0) and replaced by the real one when the request settles: a process that dies in between
leaves the opened record, which a process that finds the dead stream in the log completes with
what the log holds (`interrupted_record`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol, TypeAlias

from streamfn.chunks import (
    ErrorType,
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamChunk,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
    generated,
    tokens_in,
)
from streamfn.quotas import Lease
from streamfn.request import ChatRequest

Outcome: TypeAlias = Literal["finished", "errored", "timeout", "cancelled", "interrupted"]
FAILED: frozenset[Outcome] = frozenset({"errored", "timeout", "interrupted"})  # what totals count


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request's usage. Token counts are the provider's own unless `usage_estimated`."""

    request_id: str
    started_at: float  # Unix time the request reached streamfn
    identity: str | None  # who called: an IAM principal, an API key id, else the client address
    provider: str
    model: str
    outcome: Outcome
    status: int  # the HTTP status the client got; 0 while (or if never) known
    input_tokens: int
    output_tokens: int
    usage_estimated: bool  # the stream was cut before the provider reported usage
    duration_ms: float
    ttft_ms: float | None = None  # time to the first token; None when none came
    finish_reason: FinishReason | None = None
    error_type: ErrorType | None = None
    client_disconnected: bool = False

    def fields(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.fields(), separators=(",", ":"))


def interrupted_record(opened: str, *, output_chars: int, ended_at: float) -> UsageRecord:
    """The record of a request whose process died mid-stream: the record opened at its start
    (`opened`, as `UsageRecord.to_json` wrote it) with the output its log holds, estimated at
    about four characters a token, and a 200 if any output had been sent."""
    record = UsageRecord(**json.loads(opened))
    return replace(
        record,
        outcome="interrupted",
        status=200 if output_chars else record.status,
        output_tokens=tokens_in(output_chars),
        usage_estimated=True,
        duration_ms=_ms(max(ended_at - record.started_at, 0)),
        error_type="interrupted",
    )


@dataclass(frozen=True, slots=True)
class Totals:
    """One row of `streamfn usage`."""

    day: str
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    estimated: int  # requests whose counts are estimates
    failed: int  # errored, timed out, or interrupted
    cancelled: int


class UsageStore(Protocol):
    """Where usage records are kept. `write` may raise; the caller logs and keeps the record."""

    async def write(self, record: UsageRecord) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Tally:
    """The running account of one request's stream."""

    request_id: str
    identity: str | None
    provider: str
    request: ChatRequest
    started_at: float = field(default_factory=time.time)
    _start: float = field(default_factory=time.monotonic)
    _first_token: float | None = None
    # What the model generated: counted, and kept only for a log line that shows it
    # (STREAMFN_LOG_CONTENT), as a stream can be long.
    keep_text: bool = False
    _chars: int = 0
    _text: list[str] = field(default_factory=list)
    _final: Finish | StreamError | None = None
    lease: Lease | None = None  # the request's hold on its identity's limits
    served: bool = False  # a provider (the first, or a fallback) got past its first chunk
    opened: asyncio.Future[None] | None = None  # the write of the record as opened

    async def observe(
        self, chunks: AsyncGenerator[StreamChunk, None]
    ) -> AsyncGenerator[StreamChunk, None]:
        """`chunks`, unchanged, noted on the way past. Closing this closes `chunks`."""
        try:
            async for chunk in chunks:
                if isinstance(chunk, Finish):
                    chunk = replace(chunk, served_by=f"{self.provider}/{self.request.model}")
                    self._final = chunk
                elif isinstance(chunk, StreamError):
                    self._final = chunk
                else:
                    if self._first_token is None:
                        self._first_token = time.monotonic()
                    self._chars += generated(chunk)
                    if self.keep_text and isinstance(chunk, TextDelta | ReasoningDelta):
                        self._text.append(chunk.text)
                    elif self.keep_text and isinstance(chunk, ToolCallDelta):
                        self._text.append(chunk.arguments)
                yield chunk
        finally:
            await chunks.aclose()

    @property
    def output_text(self) -> str:
        """What the model generated so far, text, reasoning and tool-call arguments, when
        `keep_text`."""
        return "".join(self._text)

    def opening(self) -> UsageRecord:
        """The record as opened when the request reaches a provider: what it says if the
        process dies before the request settles."""
        return replace(self.record(0), outcome="interrupted", error_type="interrupted")

    def record(self, status: int) -> UsageRecord:
        """The record, once the response has been sent with `status`."""
        final = self._final
        if isinstance(final, Finish):
            usage = final.usage
        else:
            # Cut short before the provider reported usage: count what was sent and received.
            usage = Usage.estimate(self.request.prompt_text(), self._chars)
        outcome: Outcome
        match final:
            case Finish():
                outcome = "finished"
            case StreamError(type="timeout"):
                outcome = "timeout"
            case StreamError():
                outcome = "errored"
            case None:
                outcome = "cancelled"
        return UsageRecord(
            request_id=self.request_id,
            started_at=self.started_at,
            identity=self.identity,
            provider=self.provider,
            model=self.request.model,
            outcome=outcome,
            status=status,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            usage_estimated=usage.estimated,
            duration_ms=_ms(time.monotonic() - self._start),
            ttft_ms=None if self._first_token is None else _ms(self._first_token - self._start),
            finish_reason=final.reason if isinstance(final, Finish) else None,
            error_type=final.type if isinstance(final, StreamError) else None,
            # The stream was closed before its last chunk: only a departed client does that.
            client_disconnected=final is None,
        )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
