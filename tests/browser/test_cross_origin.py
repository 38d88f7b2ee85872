"""A page on one origin calling streamfn on another, in chromium: with `fetch` (streamfn.js) and
`EventSource`, on uvicorn with STREAMFN_CORS_ORIGINS and through the local function URL with
template.yaml's CORS settings. Allowed origins stream; others are blocked by the browser, and
what a page can send without a preflight (a GET, a no-cors fetch, an image, a form) is refused
by the server before any provider is called."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from local.lambda_emulator import EmulatorThread
from local.url_cors import UrlCors
from streamfn.app import create_app
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.awslambda.conftest import ROOT
from tests.conftest import ServerThread
from tests.providers import Observed, spec

pytestmark = pytest.mark.browser

CLIENT = (files("streamfn") / "static" / "streamfn.js").read_text(encoding="utf-8")

FETCH = """async (base) => {
  const { chat } = await import("/streamfn.js");
  try {
    const r = await chat({ messages: [{ role: "user", content: "one two three" }] },
                         { baseUrl: base }).result;
    return { text: r.text, requestId: r.requestId };
  } catch (e) {
    return { error: e.type };
  }
}"""

EVENT_SOURCE = """(base) => new Promise((resolve) => {
  const source = new EventSource(`${base}/chat/stream?prompt=one%20two%20three`);
  let text = "";
  source.addEventListener("token", (e) => { text += e.data; });
  source.addEventListener("done", () => { source.close(); resolve({ text }); });
  source.onerror = () => { source.close(); resolve({ text, error: "blocked" }); };
})"""


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """Another origin (another port) serving a page and its own copy of streamfn.js."""

    async def page(_request: Any) -> Response:
        return HTMLResponse("<!doctype html><title>another origin</title><p>app")

    async def client(_request: Any) -> Response:
        return Response(CLIENT, media_type="text/javascript")

    app = Starlette(routes=[Route("/", page), Route("/streamfn.js", client)])
    with ServerThread(app) as server:
        yield server.url


def calls(page: Page, origin: str, api: str) -> tuple[dict[str, Any], dict[str, Any]]:
    page.goto(origin + "/")
    return page.evaluate(FETCH, api), page.evaluate(EVENT_SOURCE, api)


def test_uvicorn_with_the_origin_allowed(page: Page, origin: str) -> None:
    settings = Settings(echo_delay_ms=1, usage_records=False, cors_origins=[origin])
    with ServerThread(create_app(settings)) as api:
        fetched, streamed = calls(page, origin, api.url)
    assert fetched["text"] == "one two three"
    assert fetched["requestId"], "X-Request-Id is exposed to the page"
    assert streamed == {"text": "one two three"}


def test_uvicorn_without_cors_blocks_both(page: Page, origin: str) -> None:
    with ServerThread(create_app(Settings(echo_delay_ms=1, usage_records=False))) as api:
        fetched, streamed = calls(page, origin, api.url)
    assert fetched == {"error": "connection"}
    assert streamed == {"text": "", "error": "blocked"}


def function_url(cors: UrlCors | None, **env: str) -> EmulatorThread:
    full_env: dict[str, str | None] = {
        "PYTHONPATH": str(ROOT),
        "STREAMFN_ECHO_DELAY_MS": "1",
        "STREAMFN_USAGE_RECORDS": "false",
        "STREAMFN_AUTH": "none",
        **env,
    }
    return EmulatorThread(env=full_env, timeout_s=30, cors=cors)


@pytest.mark.parametrize("app_cors_too", [False, True], ids=["URL only", "URL and app"])
def test_function_url_applies_the_templates_cors(
    page: Page, origin: str, app_cors_too: bool
) -> None:
    cors = UrlCors.from_template(parameters={"CorsAllowedOrigins": f"http://x.test,{origin}"})
    assert cors is not None
    assert cors.allow_methods == ("GET", "POST", "DELETE")  # as template.yaml says
    env = {"STREAMFN_CORS_ORIGINS": f'["{origin}"]'} if app_cors_too else {}
    with function_url(cors, **env) as url:
        fetched, streamed = calls(page, origin, url.url)
        # One set of CORS headers, whatever the app sends: the URL's replace the function's.
        response = httpx.get(
            f"{url.url}/chat/stream", params={"prompt": "hi"}, headers={"origin": origin}
        )
        preflight = httpx.options(
            f"{url.url}/chat/stream",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        preflights = url.record.preflights
    assert fetched["text"] == "one two three"
    assert fetched["requestId"]
    assert streamed == {"text": "one two three"}
    assert response.headers.get_list("access-control-allow-origin") == [origin]
    assert response.headers.get_list("access-control-expose-headers") == [
        "x-request-id, x-stream-id, x-streamfn-served-by, x-streamfn-input-tokens, "
        "x-streamfn-output-tokens, x-streamfn-cost-usd"
    ]
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-methods"] == "GET, POST, DELETE"
    assert preflight.headers["access-control-max-age"] == "600"
    assert preflights >= 2  # the browser's and ours, answered without invoking the function


def test_function_url_blocks_an_origin_it_does_not_list(page: Page, origin: str) -> None:
    cors = UrlCors.from_template(parameters={"CorsAllowedOrigins": "http://x.test"})
    with function_url(cors) as url:
        fetched, streamed = calls(page, origin, url.url)
    assert fetched == {"error": "connection"}
    assert streamed == {"text": "", "error": "blocked"}


# Everything a page may send to another origin without asking first (no preflight): the browser
# sends it, the page cannot read the answer, and before issue #22 a provider ran for each.
SIMPLE = """async (base) => {
  const ask = JSON.stringify({ messages: [{ role: "user", content: "one two three" }] });
  const quietly = (url, init) => fetch(url, { mode: "no-cors", ...init }).catch(() => {});
  await quietly(`${base}/chat/stream?prompt=one%20two%20three`);
  await quietly(`${base}/chat/stream`, { method: "POST", body: ask });  // text/plain
  await quietly(`${base}/v1/chat/completions`, { method: "POST", body: ask });
  await quietly(`${base}/api/chat`, { method: "POST", body: new Blob([ask]) });  // no type
  await new Promise((done) => {
    const image = new Image();
    image.onload = image.onerror = done;
    image.src = `${base}/chat/stream?prompt=an%20image`;
  });
  await new Promise((done) => {
    // The old trick: a text/plain form whose one field spells out a JSON body.
    const frame = document.createElement("iframe");
    frame.name = "sink";
    frame.onload = done;
    document.body.append(frame);
    const form = Object.assign(document.createElement("form"), {
      action: `${base}/chat/stream`, method: "POST", enctype: "text/plain", target: "sink",
    });
    const field = Object.assign(document.createElement("input"), {
      name: '{"messages": [{"role": "user", "content": "hi"}], "x": "', value: '"}',
    });
    form.append(field);
    document.body.append(form);
    form.submit();
  });
  return true;
}"""


class Recorded:
    """The app, with what each request carried and the status it got."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str, dict[str, str], int]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.requests.append((scope["method"], scope["path"], headers, message["status"]))
            await send(message)

        await self.app(scope, receive, sending)


def test_what_a_page_on_another_origin_sends_unasked_is_refused(page: Page, origin: str) -> None:
    observed = Observed(EchoProvider(delay_s=0))
    app = Recorded(create_app(Settings(usage_records=False), providers=[spec(observed)]))
    with ServerThread(app) as api:
        page.goto(origin + "/")
        assert page.evaluate(SIMPLE, api.url)
        streamed = page.evaluate(EVENT_SOURCE, api.url)
    assert streamed == {"text": "", "error": "blocked"}
    assert observed.opened == 0, "a provider ran for a page on another origin"
    spending = [r for r in app.requests if r[1].startswith(("/chat/stream", "/v1/", "/api/"))]
    assert len(spending) >= 7, app.requests
    for method, path, headers, status in spending:
        assert status == 403, (method, path, status)
        # Another port of 127.0.0.1: the same site, another origin.
        assert headers.get("sec-fetch-site") == "same-site", headers


def test_the_same_requests_from_an_allowed_origin_run(page: Page, origin: str) -> None:
    observed = Observed(EchoProvider(delay_s=0))
    settings = Settings(usage_records=False, cors_origins=[origin])
    with ServerThread(create_app(settings, providers=[spec(observed)])) as api:
        page.goto(origin + "/")
        streamed = page.evaluate(EVENT_SOURCE, api.url)
    assert streamed == {"text": "one two three"}
    assert observed.opened == 1
