"""Requests a web page on another origin makes a browser send: refused on the routes that spend,
unless STREAMFN_CORS_ORIGINS allows that origin (issue #22).

CORS decides only whether a page may *read* an answer. A "simple" request (a GET, as
`EventSource`, an `<img>` or a link make; a POST of a form or of text/plain) goes out with no
preflight, so without this check any page open in the same browser could run a generation on
the operator's keys: on loopback auth is off by design, and a stream token in a URL works from
anywhere.

The decision is the one of Go's `net/http.CrossOriginProtection` (Go 1.25; Filippo Valsorda,
"Cross-Site Request Forgery", 2025), applied to GET as well, since a GET spends here:

1. An `Origin` that STREAMFN_CORS_ORIGINS lists passes; with `*` there, every request does.
2. Else, where the browser sends `Sec-Fetch-Site` (every current one does, to https and to
   localhost), only `same-origin` and `none` (the user typed the URL or opened a bookmark)
   pass. `same-site` is refused too: another port on localhost, or another subdomain, is
   another origin, and may be someone else's app.
3. Else, with no `Origin` either, the request is not a browser's (curl, the SDKs, a server), or
   an older browser's same-origin GET: it passes.
4. Else the `Origin`'s host (and port) must be the request's `Host`: same-origin, as the chat
   page at `/` is. The scheme is not compared: behind a proxy that ends TLS the server sees
   http, and a page on http://host is on the same host as https://host anyway.

And a POST whose body is not declared JSON (text/plain, a form, multipart, or no content type
with a body) is refused with a 415: that is the one body a page can send cross-origin without a
preflight, and every client streamfn serves sends `application/json`.
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

# The verdicts of Sec-Fetch-Site that are not another origin's request.
_OWN = frozenset({"same-origin", "none"})


@dataclass(frozen=True, slots=True)
class CorsContract:
    """What a page on an allowed origin may send and read: the methods and request headers a
    preflight allows, the response headers the page may read, how long a preflight holds."""

    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    expose_headers: tuple[str, ...]
    max_age_s: int


# The one CORS contract (issue #23), wherever streamfn answers a browser: the app's
# CORSMiddleware (uvicorn), template.yaml's function URL `Cors` (AWS answers preflights there,
# without invoking the function; tests/infra/test_template.py holds the template to this) and
# the local function URL (local/url_cors.py). Headers lower-case, as HTTP/2 sends them.
CORS = CorsContract(
    # DELETE: `DELETE /v1/responses/{id}` (the Responses API, #21).
    allow_methods=("GET", "POST", "DELETE"),
    # x-api-key: the Anthropic SDKs' key header; last-event-id: a fetch-based resume.
    allow_headers=("x-api-key", "last-event-id", "authorization", "content-type"),
    # x-stream-id: what a client resumes or stops (streamfn.js reads it).
    expose_headers=(
        "x-request-id",
        "x-stream-id",
        "x-streamfn-served-by",
        # The usage of an answer sent whole (not streamed).
        "x-streamfn-input-tokens",
        "x-streamfn-output-tokens",
        "x-streamfn-cost-usd",
    ),
    max_age_s=600,
)


def is_json(content_type: str) -> bool:
    """Whether `content_type` is JSON as FastAPI reads it: application/json or */*+json."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class Origins:
    """Which origins may call: the ones listed, all of them with `*`, or only the server's
    own."""

    def __init__(self, allowed: Iterable[str]) -> None:
        listed = {o.strip().rstrip("/").lower() for o in allowed if o.strip()}
        self.any = "*" in listed
        self.allowed = frozenset(listed - {"*"})

    def refusal(self, headers: Mapping[str, str]) -> str | None:
        """Why a request with `headers` (lower-case names) comes from an origin that may not
        call, said for the caller; None when it may."""
        origin = headers.get("origin")
        if self.any or (origin is not None and origin.lower() in self.allowed):
            return None
        site = headers.get("sec-fetch-site")
        if site is not None:
            if site.lower() in _OWN:
                return None
            return self._why(origin or f"Sec-Fetch-Site: {site}")
        if origin is None:
            return None
        host = headers.get("host", "").lower()
        if origin != "null" and host and urlsplit(origin.lower()).netloc == host:
            return None
        return self._why(origin)

    @staticmethod
    def _why(whence: str) -> str:
        return (
            f"this request comes from a page on another origin ({whence}): this server takes "
            "those only from the origins STREAMFN_CORS_ORIGINS lists"
        )


def _has_body(headers: Mapping[str, str]) -> bool:
    length = headers.get("content-length", "")
    return (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers


def media_type_refusal(headers: Mapping[str, str]) -> str | None:
    """Why a POST with `headers` is not one of JSON, said for the caller; None when it is (or
    has no body and no content type)."""
    content_type = headers.get("content-type")
    if content_type is None and not _has_body(headers):
        return None
    if content_type is not None and is_json(content_type):
        return None
    return (
        "the body must be JSON, sent with content-type: application/json (this request's "
        f"content-type is {content_type or 'missing'})"
    )


Render = Callable[[str, int, str, str], Response]


class CrossOrigin:
    """Refuses, on `protected` paths, requests from origins `origins` does not allow (403) and
    POSTs whose body is not JSON (415), in the path's protocol (`render(path, status, type,
    message)`). Runs inside the CORS middleware, which answers preflights and lets an allowed
    page read a refusal, and before the gate, which need not look up a key for either."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: Origins,
        render: Render,
        protected: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.origins = origins
        self.render = render
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"
            and self.protected(scope["path"])
        ):
            headers: dict[str, str] = {}
            for name, value in scope["headers"]:  # the first of a repeated header counts
                headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
            refused: tuple[int, str, str] | None = None
            if (why := self.origins.refusal(headers)) is not None:
                refused = (403, "cross_origin", why)
            elif scope["method"] == "POST" and (why := media_type_refusal(headers)) is not None:
                refused = (415, "unsupported_media_type", why)
            if refused is not None:
                response = self.render(scope["path"], *refused)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
