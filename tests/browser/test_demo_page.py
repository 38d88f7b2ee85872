"""The chat page and the README's EventSource snippet, in Debian's chromium against a real
server: streaming, Stop, history, reasoning, tool calls, images, errors, safe rendering."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from streamfn.app import create_app
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.conftest import ServerThread
from tests.keys import create_key
from tests.providers import Observed, spec

pytestmark = pytest.mark.browser

README = Path(__file__).parents[2] / "README.md"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def sent_bodies(page: Page) -> list[dict[str, Any]]:
    """The bodies the page POSTs to /chat/stream, collected as it sends them."""
    bodies: list[dict[str, Any]] = []

    def record(request: Request) -> None:
        if request.url.endswith("/chat/stream") and request.method == "POST":
            bodies.append(json.loads(request.post_data or "{}"))

    page.on("request", record)
    return bodies


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def idle(page: Page) -> None:
    page.wait_for_function("() => !document.getElementById('send').disabled", timeout=10_000)


def test_replies_stream_in_and_the_conversation_is_kept(page: Page) -> None:
    prompt = "Tokens  stream\nto the page one word at a time."
    with ServerThread(create_app(Settings(echo_delay_ms=60, usage_records=False))) as server:
        page.goto(server.url + "/")
        bodies = sent_bodies(page)
        expect(page.locator("#provider")).to_have_value("echo")
        send(page, prompt)
        # Partway through, some of the reply is shown and the rest is still coming.
        page.wait_for_function(
            "() => { const t = document.querySelector('.msg.assistant .text');"
            " return t && t.textContent.length > 0 && t.textContent.length < 20; }"
        )
        expect(page.locator("#status")).to_contain_text("streaming")
        idle(page)
        reply = page.locator(".msg.assistant .text").first
        assert reply.text_content() == prompt
        expect(page.locator(".msg.assistant .meta").first).to_contain_text("10 in · 10 out")
        send(page, "second turn")
        idle(page)
    assert [m["role"] for m in bodies[1]["messages"]] == ["user", "assistant", "user"]
    assert bodies[1]["messages"][1] == {"role": "assistant", "content": prompt}


def test_stop_aborts_and_the_server_closes_the_provider(page: Page) -> None:
    observed = Observed(EchoProvider(delay_s=0.2))
    app = create_app(Settings(usage_records=False), providers=[spec(observed)])
    with ServerThread(app) as server:
        page.goto(server.url + "/")
        send(page, " ".join(f"word{i}" for i in range(60)))
        page.wait_for_function(
            "() => (document.querySelector('.msg.assistant .text') || {}).textContent"
        )
        page.click("#stop")
        stopped_at = time.monotonic()
        expect(page.locator("#status")).to_have_text("stopped")
        assert observed.closed.wait(1.0), "provider stream still open 1 s after Stop"
        assert observed.closed_at is not None
        assert observed.closed_at - stopped_at < 1.0
        assert observed.yielded < 20
        expect(page.locator("#send")).to_be_enabled()


def test_reasoning_is_collapsed_and_tool_calls_run_and_answer(page: Page) -> None:
    with ServerThread(create_app(Settings(echo_delay_ms=5, usage_records=False))) as server:
        page.goto(server.url + "/")
        bodies = sent_bodies(page)
        page.click("details.settings summary")
        page.select_option("#effort", "low")
        send(page, 'Roll it.\n/call roll_dice {"sides": 20}')
        idle(page)
        first = page.locator(".msg.assistant").first
        reasoning = first.locator("details.reasoning")
        expect(reasoning).to_be_visible()
        assert reasoning.get_attribute("open") is None  # collapsed until clicked
        expect(reasoning.locator(".thought")).to_have_text(
            "The user wrote 6 words. I will repeat them exactly."
        )
        card = first.locator(".tool")
        expect(card.locator(".name")).to_have_text("roll_dice")
        expect(card.locator(".args")).to_have_text('{"sides": 20}')
        roll = int(card.locator(".result").text_content() or "0")
        assert 1 <= roll <= 20
        # The page ran the tool and sent its result back; the model answered with it.
        answer = page.locator(".msg.assistant").nth(1).locator(".text")
        expect(answer).to_have_text(f"roll_dice returned {roll}")
    roles = [m["role"] for m in bodies[1]["messages"]]
    assert roles == ["user", "assistant", "tool"]
    turn = bodies[1]["messages"][1]
    assert turn["tool_calls"][0]["name"] == "roll_dice"
    assert turn["reasoning"][0]["signature"].startswith("echo.")


def test_an_attached_image_is_sent_and_model_output_is_never_html(
    page: Page, tmp_path: Path
) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    with ServerThread(create_app(Settings(echo_delay_ms=0, usage_records=False))) as server:
        page.goto(server.url + "/")
        bodies = sent_bodies(page)
        page.set_input_files("#attach", str(image))
        expect(page.locator("#attachments img")).to_have_count(1)
        send(page, "<img src=x onerror=window.pwned=1>What is this?")
        idle(page)
        reply = page.locator(".msg.assistant .text").first
        expect(reply).to_have_text(
            "<img src=x onerror=window.pwned=1>What is this? [image: image/png, 72 bytes]"
        )
        assert page.locator(".msg.assistant img").count() == 0
        assert page.evaluate("window.pwned") is None
        expect(page.locator(".msg.user .images img")).to_have_count(1)
    content = bodies[0]["messages"][0]["content"]
    assert content[1]["type"] == "image"
    assert content[1]["url"].startswith("data:image/png;base64,")


def test_a_failed_request_shows_its_message(page: Page) -> None:
    with ServerThread(create_app(Settings(usage_records=False))) as server:
        page.goto(server.url + "/")
        page.fill("#model", "gpt-9")
        send(page, "hello")
        error = page.locator(".msg.assistant .error")
        expect(error).to_have_text("HTTP 400: echo has no model 'gpt-9'; its models: echo")
        expect(page.locator("#status")).to_have_class("failed")


def test_a_provider_that_cannot_be_reached_is_marked_before_sending(page: Page) -> None:
    settings = Settings(ollama_host="http://127.0.0.1:9", usage_records=False)  # discard port
    with ServerThread(create_app(settings)) as server:
        page.goto(server.url + "/")
        ollama = page.locator("#provider option[value=ollama]")
        expect(ollama).to_have_text("ollama (not reachable)")
        assert ollama.is_disabled()


def readme_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- eventsource-snippet -->\s*```js\n(.*?)```", text, re.S)
    assert match, "README lost its EventSource snippet"
    return match.group(1)


def test_readme_eventsource_snippet_streams_once_and_stops(page: Page) -> None:
    requests: list[str] = []
    with ServerThread(create_app(Settings(echo_delay_ms=10, usage_records=False))) as server:
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


def test_with_auth_on_the_page_asks_for_a_key_and_uses_it(page: Page, tmp_path: Path) -> None:
    key, _ = create_key(tmp_path / "keys.sqlite3", "browser")
    settings = Settings(auth="api_key", keys_db=tmp_path / "keys.sqlite3", usage_records=False)
    with ServerThread(create_app(settings)) as server:
        page.goto(server.url + "/")
        send(page, "no key yet")
        expect(page.locator(".msg.assistant .error")).to_contain_text("HTTP 401")
        expect(page.locator("#api-key")).to_be_focused()  # the settings opened on it
        page.check("#remember-key")  # kept across a reload only when asked to be
        page.fill("#api-key", key)
        page.dispatch_event("#api-key", "change")
        send(page, "with a key")
        idle(page)
        expect(page.locator(".msg.assistant .text").last).to_have_text("with a key")
        page.reload()
        expect(page.locator("#api-key")).to_have_value(key)  # remembered in this browser
