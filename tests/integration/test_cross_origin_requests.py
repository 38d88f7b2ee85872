"""Requests a page on another origin makes a browser send, on every route that spends, through
a real uvicorn server: refused with a 403 unless STREAMFN_CORS_ORIGINS allows the origin, with
auth on or off, and never reaching a provider; a body not sent as JSON is a 415 (issue #22).
What a browser does with them is tests/browser/test_cross_origin.py's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.origins import Origins
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.keys import create_key
from tests.providers import Observed, spec

Serve = Callable[[ASGIApp], str]

ASK = {"messages": [{"role": "user", "content": "one two three"}]}
ALLOWED = "http://app.test"
# Ids no test has started (the stream log outlives each test's server).
STREAM, CHAT = f"stream-{uuid.uuid4().hex}", f"chat-{uuid.uuid4().hex}"
# Every route that spends, as (method, path, JSON body or None).
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/chat/stream", ASK),
    ("GET", "/chat/stream?prompt=hi", None),
    ("POST", "/chat/stream/token", {"prompt": "hi"}),
    ("GET", f"/chat/stream/{STREAM}", None),
    ("POST", f"/chat/stream/{STREAM}/stop", None),
    ("POST", "/v1/chat/completions", {"model": "echo", **ASK}),
    ("GET", "/v1/models", None),
    (
        "POST",
        "/api/chat",
        {"messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]},
    ),
    ("GET", f"/api/chat/{CHAT}/stream", None),
    ("POST", f"/api/chat/{CHAT}/stop", None),
]
ROUTE_IDS = [
    f"{m} {p.split('?')[0].replace(STREAM, '{id}').replace(CHAT, '{chat_id}')}"
    for m, p, _ in ROUTES
]
POSTS = [r for r in ROUTES if r[2] is not None]
# (headers of a request from another origin, as a browser sends them)
FOREIGN = {
    "fetch from another site": {"origin": "http://evil.test", "sec-fetch-site": "cross-site"},
    # Another port on localhost is the same site, but another origin: someone else's app.
    "fetch from another port": {"origin": "http://127.0.0.1:3000", "sec-fetch-site": "same-site"},
    "a link or an <img>": {"sec-fetch-site": "cross-site"},
    "an older browser": {"origin": "http://evil.test"},
    "a sandboxed frame": {"origin": "null", "sec-fetch-site": "cross-site"},
}


@pytest.fixture
def observed() -> Observed:
    return Observed(EchoProvider(delay_s=0))


def app_with(observed: Observed, **settings: Any) -> ASGIApp:
    return create_app(
        Settings(usage_records=False, echo_delay_ms=0, **settings), providers=[spec(observed)]
    )


async def call(
    client: httpx.AsyncClient,
    url: str,
    route: tuple[str, str, dict[str, Any] | None],
    headers: dict[str, str],
) -> httpx.Response:
    method, path, body = route
    return await client.request(method, url + path, json=body, headers=headers)


@pytest.mark.parametrize("headers", FOREIGN.values(), ids=FOREIGN.keys())
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_a_request_from_another_origin_is_a_403_and_reaches_no_provider(
    serve: Serve,
    client: httpx.AsyncClient,
    observed: Observed,
    route: tuple[str, str, dict[str, Any] | None],
    headers: dict[str, str],
) -> None:
    url = serve(app_with(observed, cors_origins=[ALLOWED]))
    response = await call(client, url, route, headers)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error.get("code", error.get("type")) == "cross_origin"
    assert "STREAMFN_CORS_ORIGINS" in error["message"]
    assert "access-control-allow-origin" not in response.headers
    assert observed.opened == 0


async def test_with_auth_on_too_before_the_key_is_looked_at(
    serve: Serve, client: httpx.AsyncClient, observed: Observed, tmp_path: Path
) -> None:
    db = tmp_path / "keys.sqlite3"
    key, _ = create_key(db)
    url = serve(app_with(observed, auth="api_key", keys_db=db))
    as_caller = {"authorization": f"Bearer {key}"}
    response = await client.post(f"{url}/chat/stream", json=ASK, headers=as_caller)
    assert response.status_code == 200
    assert observed.opened == 1
    # A page that holds a key (or a stream token in a URL) is still refused from elsewhere.
    for headers in FOREIGN.values():
        response = await client.post(
            f"{url}/chat/stream", json=ASK, headers={**as_caller, **headers}
        )
        assert response.status_code == 403, (headers, response.text)
    assert observed.opened == 1


# (headers of requests that pass: not a browser's, the page's own, or from an allowed origin)
OWN = {
    "curl, the SDKs, a server": {},
    "the chat page at / (Sec-Fetch-Site)": {"sec-fetch-site": "same-origin"},
    "the chat page at / (an older browser)": {"origin": "{url}"},
    "a URL typed or bookmarked": {"sec-fetch-site": "none"},
    "an allowed origin": {"origin": ALLOWED, "sec-fetch-site": "cross-site"},
}


@pytest.mark.parametrize("headers", OWN.values(), ids=OWN.keys())
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_requests_from_the_servers_own_origin_or_no_browser_pass(
    serve: Serve,
    client: httpx.AsyncClient,
    observed: Observed,
    route: tuple[str, str, dict[str, Any] | None],
    headers: dict[str, str],
) -> None:
    url = serve(app_with(observed, cors_origins=[ALLOWED]))
    headers = {k: v.format(url=url) for k, v in headers.items()}
    response = await call(client, url, route, headers)
    # Whatever the route answers (404: no such stream; 204: no chat stream running): not 403.
    assert response.status_code in (200, 202, 204, 404), response.text
    if headers.get("origin") == ALLOWED:
        assert response.headers["access-control-allow-origin"] == ALLOWED


async def test_a_star_allows_every_origin(
    serve: Serve, client: httpx.AsyncClient, observed: Observed
) -> None:
    url = serve(app_with(observed, cors_origins=["*"]))
    for headers in FOREIGN.values():
        response = await client.post(f"{url}/chat/stream", json=ASK, headers=headers)
        assert response.status_code == 200, (headers, response.text)
    assert observed.opened == len(FOREIGN)


async def test_routes_that_do_not_spend_stay_open_to_other_origins(
    serve: Serve, client: httpx.AsyncClient, observed: Observed
) -> None:
    url = serve(app_with(observed))
    for path in ("/", "/healthz", "/providers", "/streamfn.js", "/openapi.json"):
        response = await client.get(url + path, headers=FOREIGN["fetch from another site"])
        assert response.status_code == 200, path


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",  # fetch() with a string body
        "application/x-www-form-urlencoded",  # a <form>, and curl -d
        "multipart/form-data; boundary=x",
        None,  # a Blob without a type
    ],
)
@pytest.mark.parametrize("route", POSTS, ids=[f"POST {p}" for _, p, _ in POSTS])
async def test_a_body_not_sent_as_json_is_a_415(
    serve: Serve,
    client: httpx.AsyncClient,
    observed: Observed,
    route: tuple[str, str, dict[str, Any] | None],
    content_type: str | None,
) -> None:
    url = serve(app_with(observed))
    _, path, body = route
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post(url + path, content=json.dumps(body), headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert "content-type: application/json" in error["message"]
    assert f"this request's content-type is {content_type or 'missing'}" in error["message"]
    assert observed.opened == 0
    # The same body as JSON streams (application/*+json too, as FastAPI reads it).
    for json_type in ("application/json", "application/json; charset=utf-8"):
        response = await client.post(
            url + path, content=json.dumps(body), headers={"content-type": json_type}
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "path", [f"/chat/stream/{STREAM}/stop", f"/api/chat/{CHAT}/stop"], ids=["native", "AI SDK"]
)
async def test_a_stop_with_no_body_needs_no_content_type(
    serve: Serve, client: httpx.AsyncClient, observed: Observed, path: str
) -> None:
    url = serve(app_with(observed))
    assert (await client.post(url + path)).status_code == 404  # as streamfn.js sends it
    # A form posted there (no preflight needed) is refused whatever it holds.
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert (await client.post(url + path, headers=form)).status_code == 415


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),
        ({"origin": "http://b.test"}, False),
        ({"origin": "HTTP://B.TEST"}, False),
        ({"origin": "http://b.test", "sec-fetch-site": "cross-site"}, False),
        ({"origin": "http://c.test", "sec-fetch-site": "cross-site"}, True),
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "Same-Origin"}, False),
        ({"sec-fetch-site": "none"}, False),
        ({"sec-fetch-site": "same-site"}, True),
        ({"sec-fetch-site": "something-new"}, True),
        ({"origin": "http://host.test:8000", "host": "host.test:8000"}, False),
        ({"origin": "https://host.test", "host": "host.test"}, False),  # TLS ended by a proxy
        ({"origin": "http://host.test:8001", "host": "host.test:8000"}, True),
        ({"origin": "http://other.test", "host": "host.test"}, True),
        ({"origin": "null", "host": "host.test"}, True),
    ],
)
def test_the_decision(headers: dict[str, str], refused: bool) -> None:
    origins = Origins(["http://a.test", "http://b.test/"])
    assert (origins.refusal(headers) is not None) == refused
