"""A page on one origin calling streamfn on another, in chromium: with `fetch` (streamfn.js) and
`EventSource`, on uvicorn with STREAMFN_CORS_ORIGINS and through the local function URL with
template.yaml's CORS settings. Allowed origins stream; others are blocked by the browser."""

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

from local.lambda_emulator import EmulatorThread
from local.url_cors import UrlCors
from streamfn.app import create_app
from streamfn.settings import Settings
from tests.awslambda.conftest import ROOT
from tests.conftest import ServerThread

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
    assert cors.allow_methods == ("GET", "POST")  # as template.yaml says
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
        "x-request-id, x-streamfn-served-by"
    ]
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    assert preflight.headers["access-control-max-age"] == "600"
    assert preflights >= 2  # the browser's and ours, answered without invoking the function


def test_function_url_blocks_an_origin_it_does_not_list(page: Page, origin: str) -> None:
    cors = UrlCors.from_template(parameters={"CorsAllowedOrigins": "http://x.test"})
    with function_url(cors) as url:
        fetched, streamed = calls(page, origin, url.url)
    assert fetched == {"error": "connection"}
    assert streamed == {"text": "", "error": "blocked"}
