"""What a request went through on its way to an answer, beyond its usage record: each attempt
at a provider (the one asked for, its retries, its fallbacks), for the spans of a trace and the
labels of the metrics that outlive a fallback.

A `Trail` is made for every request that reaches a provider, whatever exporter is on (or none):
noting an attempt is a list append, and nothing on the token path reads it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamfn.chunks import ErrorType, StreamError


@dataclass(slots=True)
class Attempt:
    """One try of one candidate: `candidate` 0 is the provider and model asked for, the next
    ones the fallbacks; `retry` counts that candidate's tries before this one."""

    candidate: int
    retry: int
    provider: str
    model: str
    started_at: float  # Unix time
    ended_at: float | None = None  # when its first chunk failed; None for the one that served
    error: ErrorType | None = None
    retry_in_s: float | None = None  # the wait before the same candidate was tried again


@dataclass(slots=True)
class Trail:
    """A request's attempts, and who it asked for first (`provider`, `model`)."""

    provider: str
    model: str
    streamed: bool = True  # the client reads a stream (False: one JSON answer)
    conversation: str | None = None  # the client's own id for the chat, when it sends one
    attempts: list[Attempt] = field(default_factory=list)

    def started(self, candidate: int, provider: str, model: str) -> None:
        retry = sum(1 for a in self.attempts if a.candidate == candidate)
        self.attempts.append(Attempt(candidate, retry, provider, model, time.time()))

    def failed(self, error: StreamError, retry_in_s: float | None) -> None:
        """The latest attempt failed before its first token; `retry_in_s`: tried again after
        that long, None when the next candidate (if any) is tried instead."""
        if self.attempts:
            attempt = self.attempts[-1]
            attempt.ended_at, attempt.error = time.time(), error.type
            attempt.retry_in_s = retry_in_s
