"""`StreamChunk`: the one unit every provider yields (see shared/DESIGN.md, "Contracts").

A provider's stream is zero or more `TextDelta`s followed by exactly one `Finish` or one
`StreamError`. Providers never raise once their stream has begun; they yield a `StreamError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

# The OpenAI vocabulary, which every dialect can express.
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"]

ErrorType: TypeAlias = Literal[
    "bad_request",  # the upstream rejected the request (400, 404, 422)
    "auth",  # the provider rejected our credentials (401, 403)
    "rate_limit",  # 429
    "overloaded",  # the upstream is overloaded (Anthropic's 529, 503)
    "timeout",  # first-token, idle or total timeout, or the Lambda deadline
    "upstream_unavailable",  # connection refused or reset, 5xx
    "upstream_error",  # the upstream broke its protocol: malformed or truncated stream
    "internal",  # a bug in streamfn; logged with its traceback
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts for one request; `estimated` when the provider did not report them."""

    input_tokens: int
    output_tokens: int
    estimated: bool = False

    @classmethod
    def estimate(cls, input_text: str, output_text: str) -> Usage:
        """A rough count (about four characters a token) for when the provider reported none."""
        return cls(_estimate(input_text), _estimate(output_text), estimated=True)


def _estimate(text: str) -> int:
    return (len(text) + 3) // 4


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text, never empty."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The final chunk of a successful stream."""

    reason: FinishReason
    usage: Usage


@dataclass(frozen=True, slots=True)
class StreamError:
    """The final chunk of a failed stream. `message` is safe to show to the client."""

    type: ErrorType
    message: str
    retryable: bool
    retry_after: float | None = None  # seconds, when the upstream said


StreamChunk: TypeAlias = TextDelta | Finish | StreamError
