"""The `Provider` seam."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from streamfn.chunks import StreamChunk
from streamfn.request import ChatRequest


class Provider(Protocol):
    """A source of `StreamChunk`s, built once per process and shared by all requests.

    `stream` returns an async generator: text deltas, then exactly one `Finish` or `StreamError`.
    It never raises for upstream failures once iterated. Closing the generator (`aclose`) must
    cancel the upstream request, so that a client going away stops generation and billing.
    """

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]: ...

    async def aclose(self) -> None:
        """Release the provider's HTTP client; called once at shutdown."""
        ...
