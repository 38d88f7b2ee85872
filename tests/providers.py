"""Test providers: plain classes satisfying the `Provider` protocol (no inheritance needed)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from streamfn.chunks import StreamChunk
from streamfn.providers import Provider, ProviderSpec
from streamfn.request import ChatRequest


class Scripted:
    """Plays a script: chunks are yielded, floats are slept, exceptions are raised."""

    def __init__(self, *steps: StreamChunk | float | Exception) -> None:
        self.steps = steps

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:  # noqa: ARG002
        for step in self.steps:
            if isinstance(step, float | int):
                await asyncio.sleep(step)
            elif isinstance(step, Exception):
                raise step
            else:
                yield step

    async def aclose(self) -> None:
        pass


@dataclass
class Observed:
    """Wraps a provider and records, from the server's side, what its streams did."""

    inner: Provider
    opened: int = 0  # streams asked for: each one an upstream request paid for
    yielded: int = 0
    closed: threading.Event = field(default_factory=threading.Event)
    closed_at: float | None = None
    provider_closed: bool = False
    requests: list[ChatRequest] = field(default_factory=list)  # what each stream was asked

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        self.opened += 1
        self.requests.append(request)
        try:
            async for chunk in self.inner.stream(request):
                self.yielded += 1
                yield chunk
        finally:
            self.closed_at = time.monotonic()
            self.closed.set()

    async def aclose(self) -> None:
        self.provider_closed = True
        await self.inner.aclose()


def spec(provider: Provider, name: str = "echo", default_model: str = "echo") -> ProviderSpec:
    return ProviderSpec(name=name, default_model=default_model, build=lambda: provider)
