"""HTTP error responses: every error streamfn returns has the body `{"error": {type, message,
retryable}}`, the same JSON an `error` event carries once a stream has begun."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, assert_never

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from streamfn.chunks import StreamError
from streamfn.controls import describe


class StoreUnavailable(Exception):
    """A store the request needs (keys, stream-token claims) cannot be reached just now: the
    request is refused with a 503, never let through unchecked."""


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
        case "stopped":  # by another request, before the first token
            return 409
        case "abandoned":  # nobody is there to read it; for the usage record
            return 499
        case "interrupted" | "too_large":  # only ever after the first token
            return 502
        case _:
            assert_never(error.type)


def retry_headers(error: StreamError) -> dict[str, str]:
    """`Retry-After` for an error the client may retry after waiting."""
    if error.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    if error.type == "rate_limit":
        return {"Retry-After": "1"}
    return {}


# What pydantic puts in a location besides the fields: where the value is, and which member of
# a union it was checked against (`NamedToolIn`, `str`, `list[...]`, `literal[...]`).
_NOT_FIELDS = frozenset({"body", "query", "path", "str", "int", "float", "bool", "none"})


def _field(part: object) -> bool:
    if isinstance(part, int):
        return True
    text = str(part)
    return text not in _NOT_FIELDS and "[" not in text and not text[:1].isupper()


def _where(error: Any) -> str:
    """The field of `error`, as the body names it: `tool_choice.name`."""
    return ".".join(str(p) for p in error.get("loc", ()) if _field(p))


def _describe(errors: Sequence[Any]) -> str:
    parts = []
    for error in errors:
        where = _where(error)
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)


def control_character(errors: Sequence[Any]) -> tuple[str, str] | None:
    """The message and the field of a value refused for a control character (the pattern of
    streamfn.controls, or a stricter one such as a stream id's), if one was: that is a 400
    naming the field on every route, not a malformed body."""
    for error in errors:
        value = error.get("input")
        pattern = error.get("type") == "string_pattern_mismatch" and isinstance(value, str)
        if pattern and (why := describe(value)) is not None:
            where = _where(error) or "the value"
            return f"{where} {why}", where
    return None


def validation_message(request: Request, errors: Sequence[Any]) -> tuple[str, str | None]:
    """What is wrong with a body that did not validate, said plainly, and the field at fault.

    FastAPI's own words for a body that is not JSON at all ("31: JSON decode error", "Input
    should be a valid dictionary") do not say what to do; these do.
    """
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        position = first["loc"][-1]
        reason = (first.get("ctx") or {}).get("error") or "it does not parse"
        return (
            f"the body is not valid JSON: {reason} at character {position} (counting from 0)",
            None,
        )
    if tuple(first.get("loc", ())) == ("body",):
        content_type = request.headers.get("content-type")
        if not content_type or "json" not in content_type:
            return (
                "the body must be JSON, sent with content-type: application/json (this "
                f"request's content-type is {content_type or 'missing'})",
                None,
            )
        if first.get("type") == "missing":
            return "the body is empty: send a JSON object", None
        return "the body must be a JSON object", None
    return _describe(errors), _where(first) or None


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if (refused := control_character(exc.errors())) is not None:
        return error_response(400, HTTP_ERROR_TYPES[400], refused[0], param=refused[1])
    message, param = validation_message(request, exc.errors())
    # FastAPI's `detail` list is kept for clients that read it; `input` is dropped so a rejected
    # body (which may be large, or hold a secret) is not echoed back.
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return error_response(422, HTTP_ERROR_TYPES[422], message, param=param, detail=detail)


# What FastAPI says of a body that `json.loads` raised on other than for its syntax (the
# `JSONDecodeError`s, which become validation errors): the exception is its `__cause__`.
UNREADABLE_BODY = "There was an error parsing the body"


def _unreadable(cause: BaseException | None) -> str:
    """Why `json.loads` could not read a body, from what it raised."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not JSON: it is not valid UTF-8 ({cause.reason} at byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply to be read (arrays and objects within others)"
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        # Python's int_max_str_digits (4300 by default): no real request holds such a number.
        return (
            f"the body's JSON holds an integer too large to be read (more than "
            f"{sys.get_int_max_str_digits()} digits)"
        )
    return f"the body cannot be read as JSON ({type(cause).__name__})"


# Error types of responses that are not about a provider (those come from `status_for`). Spelt
# out rather than derived from HTTP reason phrases, which changed between Python versions.
HTTP_ERROR_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_request",
}


def http_error(exc: HTTPException) -> tuple[int, str, str]:
    """The status, error type and message of an HTTP error raised by routing or body reading."""
    if exc.status_code == 400 and exc.detail == UNREADABLE_BODY:
        return 422, HTTP_ERROR_TYPES[422], _unreadable(exc.__cause__)
    message = str(exc.detail) if exc.detail else HTTPStatus(exc.status_code).phrase
    return exc.status_code, HTTP_ERROR_TYPES.get(exc.status_code, "http_error"), message
