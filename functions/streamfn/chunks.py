"""`StreamChunk`: the one unit every provider yields (see shared/DESIGN.md, "Contracts").

A provider's stream is zero or more deltas followed by exactly one `Finish` or one `StreamError`.
Providers never raise once their stream has begun; they yield a `StreamError`.

Deltas are of three kinds, which may interleave in the order the model produced them:

- text: `TextDelta`;
- reasoning: `ReasoningDelta`s, then one `ReasoningEnd` closing the block (with the signature
  a provider needs to get it back on the next turn); a redacted block is a lone `ReasoningEnd`;
- tool calls: `ToolCallStart` (id, name), `ToolCallDelta`s (fragments of the JSON arguments),
  then `ToolCallEnd` with the whole call. Several calls may be open at once (parallel calls);
  every started call ends before a `Finish`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from streamfn.content import Reasoning, ToolCall

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
    "stopped",  # ended on purpose (POST /chat/stream/{id}/stop)
    "abandoned",  # no client was reading it: none came back in the grace period, or shutdown
    "interrupted",  # the process producing it died (a crash, kill -9); found by another
    "too_large",  # past STREAMFN_MAX_STREAM_BYTES
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts for one request; `estimated` when the provider did not report them.

    `reasoning_tokens` (part of `output_tokens`), `cached_input_tokens` (read from the
    provider's prompt cache) and `cache_creation_input_tokens` (written to it; both part of
    `input_tokens`) are None where the provider does not report them."""

    input_tokens: int
    output_tokens: int
    estimated: bool = False
    reasoning_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    @classmethod
    def estimate(cls, input_text: str, output: str | int) -> Usage:
        """A rough count (about four characters a token) for when the provider reported none:
        of `input_text`, and of the output (its text, or how many characters it had: a stream
        counts them rather than keep them)."""
        chars = output if isinstance(output, int) else len(output)
        return cls(tokens_in(len(input_text)), tokens_in(chars), estimated=True)


def tokens_in(chars: int) -> int:
    """About how many tokens `chars` characters of text are (four a token)."""
    return (chars + 3) // 4


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text, never empty."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's visible reasoning, never empty."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningEnd:
    """The end of a reasoning block: the whole block, as a client sends it back next turn."""

    block: Reasoning


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """The model began a call of tool `name`; `id` is unique within the response."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of call `id`'s JSON arguments, never empty."""

    id: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """Call `call.id` is complete. `call.arguments` is the model's JSON text exactly as it was
    produced: when the stream finished with `length` it may be cut short (not valid JSON)."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class Finish:
    """The final chunk of a successful stream."""

    reason: FinishReason
    usage: Usage
    served_by: str | None = None  # `provider/model` that answered, set once it is known


@dataclass(frozen=True, slots=True)
class StreamError:
    """The final chunk of a failed stream. `message` is safe to show to the client."""

    type: ErrorType
    message: str
    retryable: bool
    retry_after: float | None = None  # seconds, when the upstream said


Delta: TypeAlias = (
    TextDelta | ReasoningDelta | ReasoningEnd | ToolCallStart | ToolCallDelta | ToolCallEnd
)
Final: TypeAlias = Finish | StreamError
StreamChunk: TypeAlias = Delta | Final


def generated(chunk: StreamChunk) -> int:
    """How many characters of the model's output `chunk` carries: text, reasoning and
    tool-call arguments (what usage estimates and the size bound count).

    It runs three times a token (guard, tally, producer), so it is plain `isinstance` checks,
    the commonest first: a `match` with keyword class patterns, or `isinstance` with a
    `X | Y` union, costs two to four times as much on CPython 3.11."""
    if isinstance(chunk, TextDelta):
        return len(chunk.text)
    if isinstance(chunk, ReasoningDelta):
        return len(chunk.text)
    if isinstance(chunk, ToolCallDelta):
        return len(chunk.arguments)
    return 0
