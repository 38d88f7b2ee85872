"""What the OpenAPI document says of each route: its real statuses, media types and SSE events;
and the answer to `OPTIONS`, or to a method a path does not take, that lists its methods."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.responses import Response
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

_ANTHROPIC_ERROR = {
    "type": "object",
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            "required": ["type", "message"],
        },
    },
    "required": ["type", "error"],
}


# One event of a stream, as schemathesis and OpenAPI 3.2's `itemSchema` read `text/event-stream`
# (WHATWG HTML, "event stream interpretation"): an unnamed event is a `message`.
def _event(names: Sequence[str], *, keepalive_events: bool = False) -> dict[str, Any]:
    """`keepalive_events`: the stream's keepalives are events (Anthropic's `ping`), which carry
    no id; every other event does."""
    return {
        "type": "object",
        "properties": {
            "event": {"enum": list(names)},
            "data": {"type": "string"},
            "id": {"type": "string", "description": "`<stream id>:<n>`, n counting from 1"},
            "retry": {"type": "integer", "minimum": 0},
        },
        "required": ["event", "data"] if keepalive_events else ["event", "data", "id"],
    }


# The native events (streamfn.dialects.native); OpenAI's chunks and the AI SDK's parts are JSON
# in unnamed events, then `[DONE]`.
NATIVE_EVENTS = (
    "token",
    "reasoning",
    "reasoning_done",
    "tool_call_start",
    "tool_call_delta",
    "tool_call",
    "usage",
    "done",
    "error",
)
UNNAMED = ("message",)
# Anthropic's Messages events (streamfn.dialects.anthropic).
ANTHROPIC_EVENTS = (
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
)
# The Responses API's events (streamfn.dialects.responses): each `event:` line is its type.
RESPONSES_EVENTS = (
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "error",
)
# What Anthropic's statuses mean on the Messages routes (streamfn.dialects.anthropic).
ANTHROPIC_WHY = {
    404: "No provider has the model (not_found_error)",
    500: "The provider failed, or rejected streamfn's key (api_error)",
    503: "The limits store cannot be reached (api_error)",
    504: "No first token within STREAMFN_FIRST_TOKEN_TIMEOUT_S (timeout_error)",
    529: "The provider is overloaded (overloaded_error)",
}

_WHY = {
    400: "A body of the schema that cannot be used (`param` names the field): an unknown "
    "provider or model, a field its message's role does not take or lacks (a tool message "
    "without tool_call_id), both reasoning effort and budget_tokens, a tool result that "
    "answers no call, a control character in a name or an id; or a request the provider "
    "rejected",
    401: "No valid API key (when STREAMFN_AUTH asks for one)",
    403: "A provider or model STREAMFN_ALLOWED_MODELS or the API key does not allow, or a "
    "request from a page on another origin that STREAMFN_CORS_ORIGINS does not list",
    409: "The stream_id is taken, or the stream was stopped (POST .../stop) before its first token",
    413: "The body exceeds STREAMFN_MAX_BODY_BYTES",
    415: "A body not sent as content-type: application/json",
    422: "A malformed body: not JSON, or not of this schema (`detail` says where)",
    429: "A per-identity limit of streamfn's, or the provider's rate limit (with Retry-After)",
    502: "The provider failed, or rejected streamfn's key",
    503: "The provider is overloaded, or the limits table cannot be reached",
    504: "No first token within STREAMFN_FIRST_TOKEN_TIMEOUT_S",
}
# What a stream's own routes (resume, stop) answer 403 and 404 for.
STREAM_WHY = {
    403: "The stream was started by another caller, or a request from a page on another origin "
    "that STREAMFN_CORS_ORIGINS does not list",
    404: "No such stream (or older than STREAMFN_RESUME_TTL_S)",
}
# What every route that spends can be refused with, and a route with a body too.
GATE = (400, 401, 403, 422)
BODY = (413, 415)


def refusals(
    *statuses: int,
    openai: bool = False,
    anthropic: bool = False,
    why: Mapping[int, str] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The error `statuses` of a route, in the route's error shape (native, OpenAI's or
    Anthropic's), each described (by `why` where it says what the status means on this
    route)."""
    schema = _ANTHROPIC_ERROR if anthropic else _OPENAI_ERROR if openai else _NATIVE_ERROR
    content = {"application/json": {"schema": schema}}
    said = {**_WHY, **(ANTHROPIC_WHY if anthropic else {}), **(why or {})}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        why_this = said[status]
        if (openai or anthropic) and status == 422:
            # OpenAI and Anthropic answer a malformed body with a 400; declaring "4XX" also
            # keeps FastAPI from adding its own 422 to the document.
            shape = "Anthropic's" if anthropic else "OpenAI's"
            out["4XX"] = {"description": f"Any client error, in {shape} error shape"}
            status, why_this = 400, f"{said[400]}; {why_this[0].lower()}{why_this[1:]}"
        out[status] = {"description": why_this, "content": content}
    if "4XX" in out:
        out["4XX"]["content"] = content
    return out


def responses(
    *,
    events: Sequence[str],
    openai: bool = False,
    anthropic: bool = False,
    json_too: bool = False,
    body: bool = True,
) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a chat route: 200 as a stream of `events` (and JSON when
    `json_too`), and every error status it can answer before the stream begins (`body`: those
    of a request with a body too). Once it has begun, failures are in-band events."""
    event = _event(events, keepalive_events=anthropic)
    ok: dict[str, Any] = {
        # `schema` the whole stream, `itemSchema` each event, as OpenAPI 3.2 has it.
        "text/event-stream": {"schema": {"type": "array", "items": event}, "itemSchema": event}
    }
    if json_too:
        ok["application/json"] = {"schema": {"type": "object"}}
    # 413 on a GET too: the size limit applies to any request that declares a body.
    statuses = {*GATE, *(BODY if body else (413,)), 409, 429, 502, 503, 504}
    if anthropic:
        statuses = (statuses - {502}) | set(ANTHROPIC_STATUSES)
    return {
        200: {"description": "The answer, streamed as it is generated", "content": ok},
        **refusals(*sorted(statuses), openai=openai, anthropic=anthropic),
    }


# The statuses Anthropic's API has that the others' lack, or has for other reasons: a model
# nobody has (404), a provider's failure (500, not 502), an overloaded provider (529).
ANTHROPIC_STATUSES = (404, 500, 529)


class AllowedMethods:
    """A path's methods: `OPTIONS` answers 204 with `Allow` listing them (preflights from
    browsers are the CORS middleware's, which runs first), and any other method is a 405 with
    that `Allow`, before the gate (a method no route takes is not worth a key's lookup).

    A path that is a route's own, with no parameters, belongs to the routes with that path
    only, as OpenAPI matches concrete paths before templated ones ("Paths Object"), although
    Starlette would hand a templated route the methods the concrete one lacks
    (`GET /chat/stream/token` is not `GET /chat/stream/{id}`). `render(path, status, type,
    message, headers)` makes the 405 in the path's protocol."""

    def __init__(self, app: ASGIApp, *, router: Router, render: Callable[..., Response]) -> None:
        self.app = app
        self.router = router
        self.render = render
        # The methods of each route's own path once asked (most requests are to one): a scan
        # of every route costs as much as the rest of the routing. Bounded by the routes'
        # paths; templated paths are scanned each time.
        self._concrete: dict[tuple[str, str], set[str]] = {}

    def _methods(self, scope: Scope) -> set[str]:
        """The methods of `scope`'s path (none: no route has it)."""
        key = (scope.get("root_path", ""), scope["path"])
        if (known := self._concrete.get(key)) is not None:
            return known
        concrete: set[str] = set()
        templated: set[str] = set()
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match is Match.NONE:
                continue
            methods = getattr(route, "methods", None) or set()
            if getattr(route, "param_convertors", None):
                templated |= methods
            else:
                concrete |= methods
        if concrete:  # a route's own path matched, not only templated ones
            self._concrete[key] = concrete
        return concrete or templated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        methods = self._methods(scope)
        if not methods or scope["method"] in methods:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(b"allow", allow.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        response = self.render(
            scope["path"], 405, "method_not_allowed", "Method Not Allowed", {"allow": allow}
        )
        await response(scope, receive, send)
