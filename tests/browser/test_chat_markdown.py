"""The chat page's Markdown (issue #27), in chromium against `make run`'s server (local/serve.py)
with the echo provider, whose reply is the user's message word by word, so each test writes what
the "model" says: Markdown rendered while it streams and at the end, code blocks with their
language and a Copy button, hostile output inert, the page's CSP, a favicon and a quiet console.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from streamfn.app import create_app
from streamfn.chunks import Finish, TextDelta, Usage
from streamfn.settings import Settings
from tests.browser.chat import RECORD_VIOLATIONS, Watch, idle, send
from tests.conftest import ServerThread
from tests.processes import ServerProcess
from tests.providers import Scripted, spec

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """local/serve.py, as `make run` starts it: echo at 10 ms a word."""
    data = tmp_path_factory.mktemp("chat-markdown")
    server = ServerProcess(
        {
            "STREAMFN_ECHO_DELAY_MS": "10",
            "STREAMFN_USAGE_RECORDS": "false",
            "STREAMFN_STREAMS_DB": str(data / "streams.sqlite3"),
        }
    )
    try:
        yield server.url
    finally:
        server.stop()


MARKDOWN = """## Streaming Markdown

Some **bold**, some *emphasis* and `inline code`, with [a link](https://example.com/docs).

1. first
2. second

- apples
- pears

```python
def double(x):
    return x * 2
```

A sentence of a dozen words or so between the code block and the table.

| name | count |
|------|------:|
| a    | 1     |
| b    | 22    |

The end."""

# Every state the reply's Markdown goes through, recorded as the page changes it (a mutation
# observer runs with the page's own work, so no state is missed as a poll could miss it), and
# whether the block that holds the heading is still the element it was once the heading was
# finished (when the paragraph after it began).
RECORD_RENDERS = """
window.__renders = [];
new MutationObserver(() => {
  const md = document.querySelector(".msg.assistant .md");
  if (!md) return;
  const heading = md.querySelector("h2");
  const state = {
    heading: Boolean(heading),
    code: Boolean(md.querySelector("pre code.language-python")),
    table: Boolean(md.querySelector("table")),
  };
  if (heading && md.querySelector("strong")) {
    window.__heading ??= heading.closest(".block");
    state.sameHeading = heading.closest(".block") === window.__heading;
  }
  window.__renders.push(state);
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


def test_markdown_renders_while_it_streams_and_at_the_end(page: Page, url: str) -> None:
    page.add_init_script(RECORD_RENDERS)
    watch = Watch(page)
    page.goto(url + "/")
    send(page, MARKDOWN)
    idle(page)
    renders = page.evaluate("window.__renders")
    # The table is near the end of the text: a state without it is one from mid-stream.
    assert any(r["heading"] and not r["table"] for r in renders), "no heading until the end"
    assert any(r["code"] and not r["table"] for r in renders), "no code block until the end"
    assert renders[-1]["table"]
    kept = [r["sameHeading"] for r in renders if "sameHeading" in r]
    assert kept, renders
    assert all(kept), "a finished block was rebuilt by a later token"

    reply = page.get_by_role("article", name="Assistant")
    md = reply.locator(".md")
    expect(md.locator("h2")).to_have_text("Streaming Markdown")
    expect(md.locator("strong")).to_have_text("bold")
    expect(md.locator("em")).to_have_text("emphasis")
    expect(md.locator("p > code")).to_have_text("inline code")
    link = md.get_by_role("link", name="a link")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
    expect(md.locator("ol > li")).to_have_text(["first", "second"])
    expect(md.locator("ul > li")).to_have_text(["apples", "pears"])
    code = md.locator("pre > code")
    expect(code).to_have_class(re.compile(r"\blanguage-python\b"))
    expect(code).to_have_text("def double(x):\n    return x * 2")
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    font = code.evaluate("(node) => getComputedStyle(node).fontFamily")
    assert "mono" in font.lower(), font
    expect(md.locator(".code-block").get_by_role("button", name="Copy")).to_be_visible()
    expect(md.locator("th")).to_have_text(["name", "count"])
    expect(md.locator("td")).to_have_text(["a", "1", "b", "22"])
    expect(md.locator("th[align=right]")).to_have_text("count")
    expect(md.locator("p").last).to_have_text("The end.")
    # Whose each message is, for assistive technology; the composer's buttons by name.
    expect(page.get_by_role("article", name="You")).to_contain_text("## Streaming Markdown")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    assert watch.quiet(), watch


def test_copy_puts_the_code_on_the_clipboard(browser: Browser, url: str) -> None:
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        page = context.new_page()
        page.goto(url + "/")
        send(page, "Run:\n\n```sh\nmake run  # then open /\n```")
        idle(page)
        block = page.locator(".msg.assistant .code-block")
        expect(block.locator(".code-lang")).to_have_text("sh")
        block.get_by_role("button", name="Copy").click()
        page.wait_for_function(
            "async (text) => (await navigator.clipboard.readText()) === text",
            arg="make run  # then open /",
        )
        # The reply's own Copy takes its Markdown source.
        page.locator(".msg.assistant .actions").get_by_role("button", name="Copy").click()
        page.wait_for_function(
            "async (text) => (await navigator.clipboard.readText()) === text",
            arg="Run:\n\n```sh\nmake run  # then open /\n```",
        )
    finally:
        context.close()


# Each would set window.__pwned (or open a dialog) if the page ran it.
HOSTILE = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '<iframe src="javascript:window.parent.__pwned=3"></iframe>',
    '<svg onload="window.__pwned=4"><circle r="1"></circle></svg>',
    "[click me](javascript:window.__pwned=5)",
    "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[entity](&#106;avascript:window.__pwned=6) [case](JaVaScRiPt:window.__pwned=7)",
    "<javascript:window.__pwned=8>",
    '[quoted](https://example.com/"onmouseover="window.__pwned=9)',
    '<a href="https://example.com/" onclick="window.__pwned=10">raw link</a>',
    '![pic](x" onerror="window.__pwned=11) ![remote](https://example.com/pixel.png)',
    '<details open ontoggle="window.__pwned=12">x</details>',
    '```js" onmouseover="window.__pwned=13\nalert(14)\n```',
    "<style>body { display: none }</style> <form action=/x><button>go</button></form>",
]

# What the rendered replies hold that could run anything, after poking every element with the
# events an inline handler would wait for.
INSPECT = """() => {
  const found = [];
  for (const md of document.querySelectorAll(".msg.assistant .md")) {
    for (const node of md.querySelectorAll("*")) {
      for (const event of ["mouseover", "focus", "load", "error", "toggle"]) {
        node.dispatchEvent(new Event(event));
      }
      for (const attribute of node.attributes) {
        if (attribute.name.startsWith("on") || attribute.name === "style") {
          found.push(`${node.localName}[${attribute.name}]`);
        }
      }
      const risky = ["script", "iframe", "svg", "img", "object", "embed", "style", "form",
                     "button:not(.copy)", "details", "input", "base", "meta", "link"];
      if (risky.some((selector) => node.matches(selector))) found.push(node.localName);
      if (node.localName === "a" && node.hasAttribute("href")
          && !/^(https?|mailto):/.test(node.getAttribute("href"))) {
        found.push(`a[href=${node.getAttribute("href")}]`);
      }
    }
  }
  return { found, pwned: window.__pwned ?? null, violations: window.__violations };
}"""


def test_hostile_output_is_shown_as_text_and_runs_nothing(page: Page, url: str) -> None:
    page.add_init_script(RECORD_VIOLATIONS)
    watch = Watch(page)
    page.goto(url + "/")
    send(page, "\n\n".join(HOSTILE))
    idle(page)
    page.wait_for_timeout(200)  # for an image's error or a frame's load, were there any
    seen = page.evaluate(INSPECT)
    assert seen == {"found": [], "pwned": None, "violations": []}
    md = page.locator(".msg.assistant .md")
    # The words stay, as the text they are; the dangerous targets go.
    expect(md).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(md).to_contain_text("<script>window.__pwned=2</script>")
    expect(md).to_contain_text("click me")
    assert md.get_by_role("link", name="click me").count() == 0
    assert md.get_by_role("link", name="data link").count() == 0
    remote = md.get_by_role("link", name="[image: remote]")
    expect(remote).to_have_attribute("href", "https://example.com/pixel.png")
    assert watch.quiet(), watch


def test_hostile_output_split_across_tokens_runs_nothing(page: Page) -> None:
    """Tags and links cut mid-way by token boundaries, as a provider sends them."""
    pieces = [
        "Split: <img src=x on",
        'error="window.__pwned=1">',
        " and <scr",
        "ipt>window.__pwned=2</scr",
        "ipt> and [x](java",
        "script:window.__pwned=3) and <svg on",
        'load="window.__pwned=4">',
    ]
    steps = [step for piece in pieces for step in (TextDelta(piece), 0.03)]
    provider = Scripted(*steps, Finish("stop", Usage(1, len(pieces))))
    app = create_app(Settings(usage_records=False), providers=[spec(provider)])
    page.add_init_script(RECORD_VIOLATIONS)
    with ServerThread(app) as server:
        watch = Watch(page)
        page.goto(server.url + "/")
        send(page, "anything")
        idle(page)
        seen = page.evaluate(INSPECT)
    assert seen == {"found": [], "pwned": None, "violations": []}
    shown = "".join(pieces).replace("[x](javascript:window.__pwned=3)", "x")
    expect(page.locator(".msg.assistant .md")).to_have_text(shown)
    assert page.locator(".msg.assistant .md a").count() == 0
    assert watch.quiet(), watch


PROBE = """async () => {
  const tried = {};
  // Later, outside this evaluation: Playwright's own evaluations may use eval whatever the CSP.
  tried.eval = await new Promise((resolve) => setTimeout(() => {
    try { eval("window.__pwned = 'eval'"); resolve("ran"); } catch (e) { resolve(e.name); }
  }, 0));
  try {
    const script = document.createElement("script");
    script.textContent = "window.__pwned = 'inline script'";
    document.body.append(script);
    tried.inline = "appended";
  } catch (e) { tried.inline = e.name; }
  try {
    const img = document.createElement("img");
    img.setAttribute("onerror", "window.__pwned = 'inline handler'");
    img.src = "/no-such-image.png";
    document.body.append(img);
    tried.handler = "set";
  } catch (e) { tried.handler = e.name; }
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { tried, pwned: window.__pwned ?? null, violations: window.__violations };
}"""


# Inline script, an inline handler and a javascript: URL, as if they were in the page's HTML.
INJECTED = (
    "<script>window.__pwned = 'inline script'</script>"
    "<img src='/no-such-image.png' onerror=\"window.__pwned = 'inline handler'\">"
    "<iframe src=\"javascript:parent.__pwned = 'frame'\"></iframe>"
)


def test_the_page_csp_forbids_inline_script(page: Page, url: str) -> None:
    page.add_init_script(RECORD_VIOLATIONS)

    def with_injected(route: Route) -> None:
        # The server's own page and headers, with hostile markup added to its body.
        response = route.fetch()
        body = response.text().replace("</body>", f"{INJECTED}</body>")
        route.fulfill(response=response, body=body)

    page.route(url + "/", with_injected)
    response = page.goto(url + "/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in policy
    expect(page.locator("#provider")).to_have_value("echo")  # the page's own script ran
    page.wait_for_timeout(300)
    assert page.evaluate("window.__pwned ?? null") is None
    blocked = {v.split(":")[0] for v in page.evaluate("window.__violations")}
    assert {"script-src-elem", "script-src-attr"} <= blocked, blocked  # javascript: URLs too

    # Script that gets into the running page: none of it runs either.
    page.unroute(url + "/")
    page.goto(url + "/")
    seen = page.evaluate(PROBE)
    assert seen["pwned"] is None, seen
    assert seen["tried"] == {"eval": "EvalError", "inline": "TypeError", "handler": "TypeError"}
    # Nor has the page any inline script, style or handler of its own that would need allowing.
    html = (files("streamfn") / "static" / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert re.findall(r"\s(on\w+|style)=", html) == []


def test_a_favicon_and_a_quiet_console(page: Page, url: str) -> None:
    watch = Watch(page)
    page.goto(url + "/")
    send(page, "Hello, **world**.")
    idle(page)
    expect(page.locator(".msg.assistant .md strong")).to_have_text("world")
    page.wait_for_timeout(300)  # the favicon is fetched after load
    assert watch.quiet(), watch
    icon = page.locator("link[rel=icon]").get_attribute("href")
    for path in (f"/{icon}", "/favicon.ico"):
        answer = httpx.get(url + path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"] == "image/svg+xml"
        assert answer.text.startswith("<svg")


def test_the_committed_bundle_is_what_web_builds() -> None:
    """static/markdown.js is built, not edited: the same bytes from web/'s sources and lockfile
    (`make bundle`), so what is served is what web/ says."""
    if not (ROOT / "web" / "node_modules" / ".package-lock.json").exists():
        if os.environ.get("CI"):
            pytest.fail("web/node_modules is missing in CI: `make test` should have installed it")
        pytest.skip("web/'s packages are not installed (make bundle installs them)")
    node = shutil.which("node")
    assert node, "node is not on PATH"
    checked = subprocess.run(
        [node, "web/build.mjs", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
