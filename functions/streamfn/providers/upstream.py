"""Translating upstream failures into `StreamError`s: the same rules for every provider.

Each provider catches its SDK's exceptions at its boundary and calls these, so a 429 from OpenAI,
Anthropic or Ollama reaches the client the same way.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable, Mapping

from streamfn.chunks import StreamError

_MAX_MESSAGE = 500


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret replaced, and cut to a length fit for a client."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI) or `retry-after` (seconds or a date)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return None if when is None else max(0.0, when.timestamp() - time.time())


def error_for_status(
    provider: str,
    status: int,
    detail: str,
    *,
    retry_after_s: float | None = None,
    reported: str | None = None,
) -> StreamError:
    """An upstream HTTP error status; or, with `reported`, an error event inside a stream that
    `status` is the equivalent of."""
    said = f"reported {reported} mid-stream" if reported else f"answered {status}"
    message = f"{provider} {said}: {detail}" if detail else f"{provider} {said}"
    if status == 429:
        return StreamError("rate_limit", message, retryable=True, retry_after=retry_after_s)
    if status in (401, 403):
        return StreamError("auth", message, retryable=False)
    if status in (503, 529):
        return StreamError("overloaded", message, retryable=True, retry_after=retry_after_s)
    if status in (408, 504):
        return StreamError("timeout", message, retryable=True)
    if status >= 500:
        return StreamError("upstream_unavailable", message, retryable=True)
    return StreamError("bad_request", message, retryable=False)


def unreachable(provider: str, what: str) -> StreamError:
    """The connection failed, or broke mid-stream."""
    return StreamError("upstream_unavailable", f"{provider}: {what}", retryable=True)


def timed_out(provider: str) -> StreamError:
    return StreamError("timeout", f"{provider} did not answer in time", retryable=True)


def malformed(provider: str, what: str) -> StreamError:
    return StreamError(
        "upstream_error", f"{provider} sent a malformed stream: {what}", retryable=True
    )


def truncated(provider: str) -> StreamError:
    return StreamError(
        "upstream_error", f"{provider}'s stream ended before it finished", retryable=True
    )
