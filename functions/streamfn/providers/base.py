"""The `Provider` seam, and what each provider can take."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streamfn.chunks import StreamChunk, StreamError
from streamfn.content import EFFORTS, Image, InvalidContent, NamedTool
from streamfn.request import ChatRequest

ALL_EFFORTS = frozenset(EFFORTS)


class Provider(Protocol):
    """A source of `StreamChunk`s, built once per process and shared by all requests.

    `stream` returns an async generator: deltas, then exactly one `Finish` or `StreamError`.
    It never raises for upstream failures once iterated. Closing the generator (`aclose`) must
    cancel the upstream request, so that a client going away stops generation and billing.
    """

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]: ...

    async def aclose(self) -> None:
        """Release the provider's HTTP client; called once at shutdown."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """A provider that can count a request's input tokens itself (Anthropic's count_tokens);
    for the others, streamfn estimates."""

    async def count_tokens(self, request: ChatRequest) -> int | StreamError:
        """The input tokens of `request`, or why they could not be counted."""
        ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider's API can take. A request asking for more is refused with a 400 that
    names the field, before any upstream call: an option is never dropped silently. (What a
    particular model cannot do, its provider says itself, and that 400 reaches the client.)"""

    images: bool = True
    image_urls: bool = True  # https: URLs the provider fetches; else inline data only
    tools: bool = True
    forced_tool_choice: bool = True  # tool_choice "required" or a named function
    efforts: frozenset[str] = ALL_EFFORTS
    reasoning_budget: bool = True
    min_reasoning_budget: int = 1
    # Structured output the API takes (`OutputFormat.kind`s).
    output_formats: frozenset[str] = frozenset()
    # Serves OpenAI's Responses API itself: /v1/responses requests are passed through to it, so
    # what streamfn could not translate (structured output, files, newer fields) is no obstacle.
    responses: bool = False

    def check(self, request: ChatRequest, provider: str) -> None:
        """Raise `InvalidContent` for the first thing in `request` that `provider` cannot take."""
        for i, message in enumerate(request.messages):
            for j, image in enumerate(message.content):
                if not isinstance(image, Image):
                    continue
                if not self.images:
                    raise InvalidContent(
                        f"messages.{i}.content.{j}", f"{provider} does not take images"
                    )
                if image.url is not None and not self.image_urls:
                    raise InvalidContent(
                        f"messages.{i}.content.{j}.url",
                        f"{provider} takes images as data: URLs only, not by https: URL",
                    )
        if request.tools and not self.tools:
            raise InvalidContent("tools", f"{provider} does not take tools")
        choice = request.tool_choice
        if (choice == "required" or isinstance(choice, NamedTool)) and not self.forced_tool_choice:
            raise InvalidContent(
                "tool_choice", f"{provider} cannot force a tool call (tool_choice auto or none)"
            )
        wanted = request.output_format
        if wanted is not None and wanted.kind not in self.output_formats:
            takes = " (it takes json_schema)" if self.output_formats else ""
            raise InvalidContent(
                wanted.param, f"{provider} does not take {wanted.kind} structured output{takes}"
            )
        option = request.reasoning
        if option is None:
            return
        if option.budget_tokens is not None and not self.reasoning_budget:
            raise InvalidContent(
                "reasoning.budget_tokens",
                f"{provider} cannot bound reasoning by tokens; give reasoning.effort "
                f"({', '.join(sorted(self.efforts))})",
            )
        if option.budget_tokens is not None and option.budget_tokens < self.min_reasoning_budget:
            raise InvalidContent(
                "reasoning.budget_tokens",
                f"{provider} needs reasoning.budget_tokens of at least {self.min_reasoning_budget}",
            )
        if option.effort is not None and option.effort not in self.efforts:
            raise InvalidContent(
                "reasoning.effort",
                f"{provider} takes reasoning effort {', '.join(sorted(self.efforts))}",
            )
