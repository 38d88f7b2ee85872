"""The chat page's flows (issue #27), in chromium against a real server: a phone's viewport, a
failed turn kept and marked but never resent until Retry, the conversation and settings across a
reload, New chat, Regenerate, editing a message, and the page through the local function URL."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from local.lambda_emulator import EmulatorThread
from streamfn.app import create_app
from streamfn.chunks import StreamChunk, StreamError, TextDelta
from streamfn.providers.echo import EchoProvider
from streamfn.request import ChatRequest
from streamfn.settings import Settings
from tests.awslambda.conftest import ROOT
from tests.browser.chat import Watch, idle, said, send, sent_bodies
from tests.conftest import ServerThread
from tests.keys import create_key
from tests.providers import spec

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """One server for the flows that need nothing but echo."""
    with ServerThread(create_app(Settings(echo_delay_ms=5, usage_records=False))) as server:
        yield server.url


def replies(page: Page) -> list[str]:
    return [t.strip() for t in page.locator(".msg.assistant .md").all_text_contents()]


def messages(page: Page) -> list[str]:
    return [t.strip() for t in page.locator(".msg.user .text").all_text_contents()]


# What must stay on screen at 360 px: where each is, and how wide the page would scroll.
LAYOUT = """() => {
  const box = (id) => {
    const r = document.getElementById(id).getBoundingClientRect();
    return [r.left, r.right, r.top, r.bottom];
  };
  const main = document.querySelector("main");
  return {
    scroll: document.documentElement.scrollWidth,
    mainScroll: main.scrollWidth - main.clientWidth,
    boxes: Object.fromEntries(
      ["prompt", "send", "stop", "attach-button"].map((id) => [id, box(id)])),
  };
}"""

LONG_URL = "https://example.com/" + "/".join(["a-long-path-that-does-not-break"] * 4)
LONG_CODE = "const aVeryLongLineOfCode = someFunction(" + ", ".join(["anArgument"] * 10) + ");"
WIDE = f"""A reply with wide things in it: a long URL {LONG_URL} and

```js
{LONG_CODE}
```

| column one | column two | column three | column four | column five | column six |
|---|---|---|---|---|---|
| a value | another value | a third value | and a fourth | and a fifth | and a sixth |

{"Supercalifragilistic" * 6}."""


def test_a_phone_viewport_keeps_the_composer_on_screen(browser: Browser, url: str) -> None:
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        page.goto(url + "/")

        def on_screen() -> None:
            layout = page.evaluate(LAYOUT)
            assert layout["scroll"] <= 360, layout
            assert layout["mainScroll"] <= 0, layout
            for name, (left, right, top, bottom) in layout["boxes"].items():
                assert left >= 0, (name, layout)
                assert right <= 360, (name, layout)
                assert top >= 0, (name, layout)
                assert bottom <= 740, (name, layout)

        on_screen()
        page.fill("#prompt", WIDE + "\n" + " ".join(["more"] * 60))
        page.press("#prompt", "Enter")
        expect(page.locator("#stop")).to_be_enabled()
        on_screen()  # while it streams: Stop is there to be pressed
        page.locator("#stop").tap()
        idle(page)
        send(page, WIDE)
        idle(page)
        expect(page.locator(".msg.assistant").last.locator(".md table")).to_have_count(1)
        on_screen()
        # The wide things scroll in place.
        pre = page.locator(".msg.assistant pre").last
        assert pre.evaluate("(node) => node.scrollWidth > node.clientWidth")
        page.click("details.settings summary")
        on_screen()
    finally:
        context.close()


def test_a_failed_turn_stays_marked_is_not_resent_and_retry_sends_it(
    page: Page, tmp_path: Path
) -> None:
    """The issue's report: a 401, a key entered, and the next message went with the failed one
    still in the history."""
    key, _ = create_key(tmp_path / "keys.sqlite3", "browser")
    settings = Settings(auth="api_key", keys_db=tmp_path / "keys.sqlite3", usage_records=False)
    with ServerThread(create_app(settings)) as server:
        page.goto(server.url + "/")
        bodies = sent_bodies(page)
        send(page, "first try")
        idle(page)
        failed = page.locator(".msg.failed")
        expect(failed).to_have_count(2)  # the message and its reply
        expect(page.locator(".msg.user.failed .note")).to_contain_text("not sent again")
        expect(page.locator(".msg.assistant.failed .error")).to_contain_text("HTTP 401")
        retry = page.get_by_role("button", name="Retry")
        expect(retry).to_have_count(1)
        page.fill("#api-key", key)
        send(page, "second try")
        idle(page)
        assert said(bodies[-1]) == [("user", "second try")]
        expect(failed).to_have_count(2)  # still shown, still marked
        retry.click()
        idle(page)
        assert said(bodies[-1]) == [
            ("user", "second try"),
            ("assistant", "second try"),
            ("user", "first try"),
        ]
        expect(page.locator(".msg.failed")).to_have_count(0)
        # Sent again as the conversation's last message, and answered there.
        assert messages(page) == ["second try", "first try"]
        assert replies(page) == ["second try", "first try"]
    assert len(bodies) == 3


class FailsOnce:
    """Its first stream fails after a few words (in-band: the stream had begun); then echo."""

    def __init__(self) -> None:
        self.streams = 0
        self.echo = EchoProvider(delay_s=0.005)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        self.streams += 1
        if self.streams == 1:
            yield TextDelta("Half an")
            yield StreamError("upstream_unavailable", "the upstream went away", retryable=True)
            return
        async for chunk in self.echo.stream(request):
            yield chunk

    async def aclose(self) -> None:
        await self.echo.aclose()


def test_a_reply_that_fails_midway_is_kept_marked_and_retried(page: Page) -> None:
    provider = FailsOnce()
    app = create_app(Settings(usage_records=False), providers=[spec(provider)])
    with ServerThread(app) as server:
        page.goto(server.url + "/")
        bodies = sent_bodies(page)
        send(page, "hello there")
        idle(page)
        reply = page.locator(".msg.assistant")
        expect(reply).to_have_class("msg assistant failed")
        expect(reply.locator(".md")).to_have_text("Half an")  # what came stays visible
        expect(reply.locator(".error")).to_have_text("the stream failed: the upstream went away")
        expect(reply.get_by_role("button", name="Regenerate")).to_have_count(0)
        page.get_by_role("button", name="Retry").click()
        idle(page)
        expect(page.locator(".msg.assistant")).to_have_count(1)
        assert replies(page) == ["hello there"]
        expect(page.locator(".msg.failed")).to_have_count(0)
        # Reloaded, the conversation has the answer, not the failure.
        page.reload()
        assert replies(page) == ["hello there"]
        send(page, "and again")
        idle(page)
    assert said(bodies[1]) == [("user", "hello there")]
    assert said(bodies[-1]) == [
        ("user", "hello there"),
        ("assistant", "hello there"),
        ("user", "and again"),
    ]


def test_a_reload_mid_stream_keeps_what_came_marked_interrupted(page: Page, url: str) -> None:
    page.goto(url + "/")
    bodies = sent_bodies(page)
    send(page, " ".join(f"word{i}" for i in range(400)))  # 2 s at echo's 5 ms a word
    page.wait_for_function(
        "() => (document.querySelector('.msg.assistant .md') || {}).textContent?.length > 10"
    )
    page.reload()
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_class("msg assistant failed")
    expect(reply.locator(".error")).to_contain_text("interrupted")
    assert (reply.locator(".md").text_content() or "").startswith("word0 word1")
    send(page, "next")
    idle(page)
    assert said(bodies[-1]) == [("user", "next")]  # the interrupted exchange is not sent


def test_the_conversation_and_settings_survive_a_reload_and_new_chat_clears_it(
    page: Page, url: str
) -> None:
    page.goto(url + "/")
    bodies = sent_bodies(page)
    page.click("details.settings summary")
    page.fill("#system", "Be brief.")
    page.select_option("#effort", "low")
    page.fill("#max-tokens", "50")
    page.uncheck("#tools")
    page.fill("#api-key", "sfn_not_remembered")
    send(page, "**one**")
    idle(page)
    send(page, "two")
    idle(page)
    page.reload()
    assert messages(page) == ["**one**", "two"]
    expect(page.locator(".msg.assistant .md strong")).to_have_text("one")  # still Markdown
    expect(page.locator(".msg.assistant details.reasoning")).to_have_count(2)
    expect(page.locator("#system")).to_have_value("Be brief.")
    expect(page.locator("#effort")).to_have_value("low")
    expect(page.locator("#max-tokens")).to_have_value("50")
    expect(page.locator("#tools")).not_to_be_checked()
    expect(page.locator("#api-key")).to_have_value("")  # "remember" was not ticked
    assert page.evaluate("localStorage.getItem('streamfn.apiKey')") is None
    send(page, "three")
    idle(page)
    # The reasoning blocks came back signed as echo signed them, or echo would refuse them.
    expect(page.locator(".msg.assistant .md").last).to_have_text("three")
    last = bodies[-1]
    assert said(last) == [
        ("system", "Be brief."),
        ("user", "**one**"),
        ("assistant", "**one**"),
        ("user", "two"),
        ("assistant", "two"),
        ("user", "three"),
    ]
    assert last["reasoning"] == {"effort": "low"}
    assert last["max_tokens"] == 50
    assert "tools" not in last
    assert last["messages"][2]["reasoning"][0]["signature"].startswith("echo.")

    page.click("#new-chat")
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#welcome")).to_be_visible()
    page.reload()
    expect(page.locator("#provider")).to_have_value("echo")
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#system")).to_have_value("Be brief.")  # settings are not the chat


def test_regenerate_the_last_answer_and_edit_a_message(page: Page, url: str) -> None:
    page.goto(url + "/")
    bodies = sent_bodies(page)
    send(page, "alpha")
    idle(page)
    page.get_by_role("button", name="Regenerate").click()
    idle(page)
    assert said(bodies[-1]) == [("user", "alpha")]  # not the answer it replaces
    assert replies(page) == ["alpha"]
    send(page, "beta")
    idle(page)
    expect(page.get_by_role("button", name="Regenerate")).to_have_count(1)  # the last only
    # Edit the first message: it and all after it give way to the edited one and its answer.
    page.locator(".msg.user").first.get_by_role("button", name="Edit").click()
    editor = page.get_by_role("textbox", name="Edit your message")
    expect(editor).to_have_value("alpha")
    editor.fill("gamma")
    page.get_by_role("button", name="Resend").click()
    idle(page)
    assert said(bodies[-1]) == [("user", "gamma")]
    assert messages(page) == ["gamma"]
    assert replies(page) == ["gamma"]
    # Cancel leaves a message as it was.
    page.get_by_role("button", name="Edit").click()
    page.get_by_role("textbox", name="Edit your message").fill("delta")
    page.get_by_role("button", name="Cancel").click()
    assert messages(page) == ["gamma"]
    assert len(bodies) == 4


def test_the_page_through_the_local_function_url(page: Page) -> None:
    """The page, its script, bundle, styles and icon through the Lambda runtime and a function
    URL: Markdown rendered, hostile output inert, the CSP sent, nothing missing."""
    env: dict[str, str | None] = {
        "PYTHONPATH": str(ROOT),
        "STREAMFN_ECHO_DELAY_MS": "2",
        "STREAMFN_USAGE_RECORDS": "false",
        "STREAMFN_AUTH": "none",
    }
    with EmulatorThread(env=env, timeout_s=30) as lambda_url:
        watch = Watch(page)
        # The page's files come in parallel, each a cold start of another execution environment
        # (a runtime process here): slow on a busy machine.
        page.set_default_timeout(30_000)
        response = page.goto(lambda_url.url + "/", timeout=90_000)
        assert response is not None
        assert "script-src 'self'" in response.headers["content-security-policy"]
        send(page, "# Hi\n\n`code` and <img src=x onerror=alert(1)> [x](javascript:alert(2))")
        idle(page)
        md = page.locator(".msg.assistant .md")
        expect(md.locator("h1")).to_have_text("Hi")
        expect(md.locator("code")).to_have_text("code")
        expect(md).to_contain_text("<img src=x onerror=alert(1)>")
        assert md.locator("img, a").count() == 0
        icon = httpx.get(lambda_url.url + "/favicon.ico")
        assert icon.headers["content-type"] == "image/svg+xml"
        page.wait_for_timeout(200)
    assert watch.quiet(), watch
