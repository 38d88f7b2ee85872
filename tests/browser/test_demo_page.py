"""The demo page and the README's EventSource snippet, in a real browser against a real server."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from streamfn.app import create_app
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.conftest import ServerThread
from tests.providers import Observed, spec

pytestmark = pytest.mark.browser

README = Path(__file__).parents[2] / "README.md"


def test_demo_page_streams_the_reply_and_shows_usage(page: Page) -> None:
    prompt = "Tokens  stream\nto the page one word at a time."
    with ServerThread(create_app(Settings(echo_delay_ms=60))) as server:
        page.goto(server.url + "/")
        expect(page.locator("#provider")).to_have_value("echo")
        page.fill("#prompt", prompt)
        page.click("#send")
        # Partway through, some of the reply is shown and the rest is still coming.
        page.wait_for_function(
            "() => { const t = document.getElementById('output').textContent;"
            " return t.length > 0 && t.length < 20; }"
        )
        expect(page.locator("#status")).to_contain_text("streaming")
        expect(page.locator("#status")).to_contain_text("done (stop)", timeout=5000)
        assert page.locator("#output").text_content() == prompt
        expect(page.locator("#status")).to_contain_text("10 in, 10 out")


def test_stop_button_aborts_and_the_server_closes_the_provider(page: Page) -> None:
    observed = Observed(EchoProvider(delay_s=0.2))
    app = create_app(Settings(), providers=[spec(observed)])
    with ServerThread(app) as server:
        page.goto(server.url + "/")
        page.fill("#prompt", " ".join(f"word{i}" for i in range(60)))
        page.click("#send")
        page.wait_for_function("() => document.getElementById('output').textContent.length > 0")
        page.click("#stop")
        stopped_at = time.monotonic()
        expect(page.locator("#status")).to_have_text("stopped")
        assert observed.closed.wait(1.0), "provider stream still open 1 s after Stop"
        assert observed.closed_at is not None
        assert observed.closed_at - stopped_at < 1.0
        assert observed.yielded < 20
        expect(page.locator("#send")).to_be_enabled()


def test_demo_page_shows_an_http_error(page: Page) -> None:
    with ServerThread(create_app(Settings(echo_delay_ms=0, max_body_bytes=200))) as server:
        page.goto(server.url + "/")
        page.fill("#prompt", "x" * 500)
        page.click("#send")
        expect(page.locator("#status")).to_contain_text("HTTP 413")
        expect(page.locator("#status")).to_have_class("error")


def readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- eventsource-snippet -->\s*```js\n(.*?)```", text, re.S)
    assert match, "README lost its EventSource snippet"
    return match.group(1)


def test_readme_eventsource_snippet_streams_once_and_stops(page: Page) -> None:
    requests: list[str] = []
    with ServerThread(create_app(Settings(echo_delay_ms=10))) as server:
        page.on("request", lambda r: requests.append(r.url) if "/chat/stream" in r.url else None)
        page.goto(server.url + "/healthz")
        logs: list[str] = []
        page.on("console", lambda m: logs.append(m.text))
        snippet = re.sub(r'^const BASE = ".*?";', f"const BASE = {server.url!r};", readme_snippet())
        assert server.url in snippet
        page.add_script_tag(content=snippet)
        deadline = time.monotonic() + 5
        while not any(line.startswith("finished:") for line in logs):
            assert time.monotonic() < deadline, logs
            page.wait_for_timeout(50)
        page.wait_for_timeout(500)  # long enough for a reconnect, were one to happen
    finished = next(line for line in logs if line.startswith("finished:"))
    assert finished == "finished: stop Why is the sky blue?"
    assert len(requests) == 1, requests
