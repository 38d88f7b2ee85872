"""What the chat page's browser tests share: driving the page, and watching what it says."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import ConsoleMessage, Dialog, Page, Request, Response


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def idle(page: Page) -> None:
    """Until the page has finished its exchange (Send is enabled again)."""
    page.wait_for_function("() => !document.getElementById('send').disabled", timeout=10_000)


def sent_bodies(page: Page) -> list[dict[str, Any]]:
    """The bodies the page POSTs to /chat/stream, collected as it sends them."""
    bodies: list[dict[str, Any]] = []

    def record(request: Request) -> None:
        if request.url.endswith("/chat/stream") and request.method == "POST":
            bodies.append(json.loads(request.post_data or "{}"))

    page.on("request", record)
    return bodies


def said(body: dict[str, Any]) -> list[tuple[str, str]]:
    """A request's messages as (role, text) pairs."""
    pairs = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content)
        pairs.append((message["role"], content))
    return pairs


class Watch:
    """Everything a page complains about: console errors and warnings, uncaught exceptions,
    responses of 400 and up (a missing favicon), CSP violations, and dialogs (dismissed)."""

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("response", self._response)
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def quiet(self) -> bool:
        return not (self.console or self.errors or self.failed or self.dialogs)

    def __repr__(self) -> str:
        return (
            f"console={self.console} errors={self.errors} failed={self.failed} "
            f"dialogs={self.dialogs}"
        )


# Records the page's CSP violations from the start (a Playwright init script runs before the
# page's own, and is not subject to its CSP).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.effectiveDirective}: ${e.blockedURI || e.sample}`);
});
"""
