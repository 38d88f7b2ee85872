"""What the OpenAPI document says of each route: its real statuses and media types, and the
`OPTIONS` answer that lists a path's methods."""

from __future__ import annotations

from typing import Any

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

_NATIVE_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "retryable": {"type": "boolean"},
                "param": {"type": "string"},
            },
            "required": ["type", "message", "retryable"],
        }
    },
}
_OPENAI_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_WHY = {
    400: "An unknown provider or model, content that cannot be used (`param` names the "
    "field), or a request the provider rejected",
    401: "No valid API key (when STREAMFN_AUTH asks for one)",
    403: "A provider or model STREAMFN_ALLOWED_MODELS or the API key does not allow, or a "
    "request from a page on another origin that STREAMFN_CORS_ORIGINS does not list",
    413: "The body exceeds STREAMFN_MAX_BODY_BYTES",
    415: "A body not sent as content-type: application/json",
    422: "A malformed body",
    429: "A per-identity limit of streamfn's, or the provider's rate limit (with Retry-After)",
    502: "The provider failed, or rejected streamfn's key",
    503: "The provider is overloaded, or the limits table cannot be reached",
    504: "No first token within STREAMFN_FIRST_TOKEN_TIMEOUT_S",
}


# For /v1/models, which reaches no provider but asks for a key as OpenAI's API does.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No valid API key (when STREAMFN_AUTH asks for one)",
        "content": {"application/json": {"schema": _OPENAI_ERROR}},
    }
}


def refused(*, body: bool) -> dict[int | str, dict[str, Any]]:
    """What a route that spends but starts no stream answers besides: no key, a page on another
    origin, and (`body`: a POST) a body not sent as JSON."""
    out = {**UNAUTHORIZED, 403: {"description": _WHY[403]}}
    if body:
        out[415] = {"description": _WHY[415]}
    return out


def responses(
    *, stream: str, openai: bool = False, json_too: bool = False
) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a chat route: 200 as `stream` (and JSON when `json_too`), and every
    error status it can answer before the stream begins. Once it has begun, failures are
    in-band events."""
    ok: dict[str, Any] = {stream: {"schema": {"type": "string"}}}
    if json_too:
        ok["application/json"] = {"schema": {"type": "object"}}
    out: dict[int | str, dict[str, Any]] = {
        200: {"description": "The answer, streamed as it is generated", "content": ok}
    }
    schema = _OPENAI_ERROR if openai else _NATIVE_ERROR
    for status, why in _WHY.items():
        if openai and status == 422:
            # OpenAI answers a malformed body with a 400; declaring "4XX" also keeps FastAPI
            # from adding its own 422 to the document.
            status, why = 400, f"{_WHY[400]}; a malformed body"
            out["4XX"] = {
                "description": "Any client error, in OpenAI's error shape",
                "content": {"application/json": {"schema": schema}},
            }
        out[status] = {"description": why, "content": {"application/json": {"schema": schema}}}
    return out


class OptionsAllow:
    """`OPTIONS` on a path answers 204 with `Allow` listing its methods (preflights from
    browsers are the CORS middleware's, which runs first)."""

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            methods: set[str] = set()
            for route in self.router.routes:
                match, _ = route.matches(scope)
                if match is not Match.NONE:
                    methods |= getattr(route, "methods", None) or set()
            if methods:
                allow = ", ".join(sorted(methods | {"OPTIONS"}))
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [(b"allow", allow.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)
