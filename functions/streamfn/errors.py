"""HTTP error responses: every error streamfn returns has the body `{"error": {type, message,
retryable}}`, the same JSON an `error` event carries once a stream has begun."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, assert_never

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streamfn.chunks import StreamError


def error_response(
    status: int,
    type: str,
    message: str,
    *,
    retryable: bool = False,
    headers: Mapping[str, str] | None = None,
    param: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """An error response; `param` names the request field at fault, as OpenAI's errors do."""
    error: dict[str, Any] = {"type": type, "message": message, "retryable": retryable}
    if param is not None:
        error["param"] = param
    return JSONResponse({"error": error, **extra}, status_code=status, headers=headers)


def error_body(error: StreamError) -> dict[str, object]:
    """The JSON describing an error, in an `error` event and in an HTTP error response."""
    return {"type": error.type, "message": error.message, "retryable": error.retryable}


def status_for(error: StreamError) -> int:
    """The HTTP status of a stream that failed before its first token."""
    match error.type:
        case "bad_request":
            return 400
        case "rate_limit":
            return 429
        case "overloaded":
            return 503
        case "timeout":
            return 504
        case "auth" | "upstream_unavailable" | "upstream_error":
            # The provider rejecting our key is our gateway's fault, not the client's: 502.
            return 502
        case "internal":
            return 500
        case _:
            assert_never(error.type)


def retry_headers(error: StreamError) -> dict[str, str]:
    """`Retry-After` for an error the client may retry after waiting."""
    if error.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    if error.type == "rate_limit":
        return {"Retry-After": "1"}
    return {}


def _describe(errors: Sequence[Any]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)


async def on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's `detail` list is kept for clients that read it; `input` is dropped so a rejected
    # body (which may be large, or hold a secret) is not echoed back.
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return error_response(422, HTTP_ERROR_TYPES[422], _describe(exc.errors()), detail=detail)


# Error types of responses that are not about a provider (those come from `status_for`). Spelt
# out rather than derived from HTTP reason phrases, which changed between Python versions.
HTTP_ERROR_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_request",
}


async def on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(
        exc.status_code,
        HTTP_ERROR_TYPES.get(exc.status_code, "http_error"),
        str(exc.detail) if exc.detail else HTTPStatus(exc.status_code).phrase,
        headers=exc.headers,
    )
