"""Usage records: what one request cost, known only once its stream has ended.

A `Tally` watches a guarded chunk stream go by and, once the response has been sent, becomes a
`UsageRecord`. Stores (`streamfn.stores`) keep records; they implement `UsageStore`.

A record carries what the request cost (`cost_usd`, `streamfn.prices`): None where the model's
price is not known, and for a record as opened or completed after its process died.

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
from streamfn.prices import Prices, cost_of, usd
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
    # Parts of input_tokens and output_tokens, None where the provider does not say.
    cached_input_tokens: int | None = None  # read from the provider's prompt cache
    cache_creation_input_tokens: int | None = None  # written to it
    reasoning_tokens: int | None = None
    cost_usd: float | None = None  # what it cost; None when its price is not known

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
        cost_usd=None,  # its output is an estimate; the process that could price it is gone
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
    cost_usd: float | None = None  # of the requests priced; None when none was


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
    lease: Lease | None = None  # the request's hold on its identity's limits (`hold`)
    served: bool = False  # a provider (the first, or a fallback) got past its first chunk
    opened: asyncio.Future[None] | None = None  # the write of the record as opened
    prices: Prices | None = None  # None: nothing is priced

    def hold(self, lease: Lease) -> None:
        """Keep `lease` until the stream's last chunk or the request settles: released with what
        the request cost (its releaser gives the tokens; the cost is this tally's)."""
        self.lease = _Charged(lease, self)

    async def observe(
        self, chunks: AsyncGenerator[StreamChunk, None]
    ) -> AsyncGenerator[StreamChunk, None]:
        """`chunks`, unchanged, noted on the way past. Closing this closes `chunks`."""
        try:
            async for chunk in chunks:
                if isinstance(chunk, Finish):
                    usage = chunk.usage
                    if self.prices is not None:
                        await self.prices.prepare(self.provider, self.request.model)
                        usage = self.prices.priced(
                            self.provider, self.request.model, usage, at=self.started_at
                        )
                    served_by = f"{self.provider}/{self.request.model}"
                    chunk = replace(chunk, served_by=served_by, usage=usage)
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
        return replace(
            self.record(0, priced=False), outcome="interrupted", error_type="interrupted"
        )

    def usage(self) -> Usage:
        """The provider's usage; cut short before it reported any, an estimate of what was
        sent and received."""
        if isinstance(self._final, Finish):
            return self._final.usage
        return Usage.estimate(self.request.prompt_text(), self._chars)

    def cost_usd(self) -> float | None:
        """What the request cost (of an estimate's tokens, when it was cut short); None when
        the model's price is not known."""
        if isinstance(self._final, Finish):
            return cost_of(self._final.usage)  # priced as it went past
        if self.prices is None:
            return None
        return self.prices.cost(self.provider, self.request.model, self.usage(), at=self.started_at)

    def usage_headers(self) -> dict[str, str]:
        """The usage of an answer sent whole, for its response's headers (a stream's is in its
        last events instead): tokens, and what they cost (`null` when that is not known)."""
        if not isinstance(self._final, Finish):
            return {}
        usage, cost = self._final.usage, self.cost_usd()
        return {
            "x-streamfn-input-tokens": str(usage.input_tokens),
            "x-streamfn-output-tokens": str(usage.output_tokens),
            "x-streamfn-cost-usd": "null" if cost is None else usd(cost),
        }

    def record(self, status: int, *, priced: bool = True) -> UsageRecord:
        """The record, once the response has been sent with `status`."""
        final = self._final
        usage = self.usage()
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
            cached_input_tokens=usage.cached_input_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_usd=self.cost_usd() if priced else None,
        )


@dataclass(slots=True)
class _Charged:
    """A request's lease, released with the request's cost unless its releaser says it."""

    lease: Lease
    tally: Tally

    async def release(self, used_tokens: int, spent_usd: float | None = None) -> None:
        spent = self.tally.cost_usd() if spent_usd is None else spent_usd
        await self.lease.release(used_tokens, spent)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
