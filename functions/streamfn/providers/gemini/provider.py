"""The Gemini provider: one httpx2 client, the request sent, its SSE read raw, errors mapped."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

import httpx2
import orjson

from streamfn.chunks import StreamChunk, StreamError
from streamfn.content import InvalidContent
from streamfn.providers import upstream
from streamfn.providers.gemini.body import body
from streamfn.providers.gemini.reading import Response
from streamfn.providers.pool import streaming_client
from streamfn.providers.sse_reader import SSEReader
from streamfn.request import ChatRequest

NAME = "gemini"
# google/genai/_api_client.py: the Gemini API's base URL and version, when no
# GOOGLE_GEMINI_BASE_URL overrides the former.
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"

# The HTTP status of each canonical error code (google.rpc.Code), for an error reported inside
# a stream by its `status` name (https://cloud.google.com/apis/design/errors#error_codes).
_STATUS_OF_CODE = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def model_path(model: str) -> str:
    """`models/<name>` (or `tunedModels/<name>`), as google-genai's `t_model` makes it
    (google/genai/_transformers.py), the name escaped so that it stays one path segment."""
    for prefix in ("models/", "tunedModels/"):
        if model.startswith(prefix):
            return prefix + quote(model.removeprefix(prefix), safe="")
    return "models/" + quote(model, safe="")


class GeminiProvider:
    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        total_timeout_s: float,
        connect_timeout_s: float,
        max_connections: int = 10000,
    ) -> None:
        self._api_key = api_key
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        # The key goes in a header, never in the URL (which httpx2 logs, and errors name).
        headers = {"content-type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        self._client = streaming_client(
            headers=headers,
            total_timeout_s=total_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )

    def url(self, model: str) -> str:
        return f"{self._base}/{API_VERSION}/{model_path(model)}:streamGenerateContent?alt=sse"

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        try:
            payload = orjson.dumps(body(request))
        except InvalidContent as exc:
            yield StreamError("bad_request", f"{exc.param}: {exc.message}", retryable=False)
            return
        state = Response()
        reader = SSEReader()
        try:
            # Leaving this block, however it is left, closes the response and its connection:
            # a client that goes away stops the generation upstream.
            async with self._client.stream("POST", self.url(request.model), content=payload) as r:
                if r.status_code >= 400:
                    yield self._status_error(r.status_code, await r.aread(), r.headers)
                    return
                async for piece in r.aiter_bytes():
                    for _, data in reader.feed(piece):
                        if state.over:
                            continue  # read to the end, so that the connection is kept
                        chunk = orjson.loads(data)
                        if not isinstance(chunk, dict):
                            raise ValueError("a chunk that is not a JSON object")
                        if (error := chunk.get("error")) is not None:
                            yield self._mid_stream(error)
                            return
                        for out in state.feed(chunk):
                            yield out
        except httpx2.TimeoutException:
            if not state.over:
                yield upstream.timed_out(NAME)
                return
        except httpx2.TransportError:
            if not state.over:  # after the last chunk, a broken connection lost nothing
                yield upstream.unreachable(NAME, "the connection failed or broke")
                return
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, or not a response
            yield upstream.malformed(NAME, str(exc)[:200])
            return
        yield state.final(request)

    def _status_error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> StreamError:
        """An error status before the stream: `{"error": {code, message, status, details}}`."""
        error = _error_object(raw)
        if error is None:
            detail = raw.decode("utf-8", "replace")[:200]
            return upstream.error_for_status(
                NAME,
                status,
                upstream.redact(detail, [self._api_key]),
                retry_after_s=upstream.retry_after(headers),
            )
        if status == 400 and _reason(error) == "API_KEY_INVALID":
            status = 401  # streamfn's key, not the client's request, is at fault
        return upstream.error_for_status(
            NAME,
            status,
            self._detail(error),
            retry_after_s=_retry_delay(error) or upstream.retry_after(headers),
        )

    def _mid_stream(self, error: Any) -> StreamError:
        """An `error` object inside the stream, after the 200."""
        error = error if isinstance(error, dict) else {"message": str(error)}
        code, name = error.get("code"), error.get("status")
        if isinstance(code, int) and 400 <= code <= 599:
            status = code
        else:
            status = _STATUS_OF_CODE.get(str(name), 500)
        return upstream.error_for_status(
            NAME, status, self._detail(error), reported=str(name or code or "an error")
        )

    def _detail(self, error: dict[str, Any]) -> str:
        message = str(error.get("message") or "")
        name = error.get("status")
        detail = f"{message} ({name})" if message and name else message or str(name or "")
        return upstream.redact(detail, [self._api_key])

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_object(raw: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(raw)
    except ValueError:
        return None
    if isinstance(document, list) and len(document) == 1:  # as google-genai's errors.py allows
        document = document[0]
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, dict) else None


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _reason(error: dict[str, Any]) -> str | None:
    """The `google.rpc.ErrorInfo` reason (API_KEY_INVALID, ...), if the error has one."""
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason") or "") or None
    return None


def _retry_delay(error: dict[str, Any]) -> float | None:
    """Seconds from a `google.rpc.RetryInfo` detail's `retryDelay` (a Duration: "34.4s")."""
    for detail in _details(error):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay") or "")
            try:
                return max(0.0, float(delay.removesuffix("s")))
            except ValueError:
                return None
    return None
