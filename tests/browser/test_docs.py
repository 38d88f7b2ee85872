"""/docs in chromium on a machine with no network: Swagger UI's files come from the app."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.conftest import ServerThread

pytestmark = pytest.mark.browser


def test_docs_render_offline_with_every_route(page: Page) -> None:
    outside: list[str] = []
    with ServerThread(create_app(Settings(usage_records=False))) as server:
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(server.url) else None,
        )
        page.goto(server.url + "/docs")
        summaries = page.locator(".opblock-summary-path")
        expect(summaries.first).to_be_visible(timeout=10_000)
        paths = set(summaries.all_inner_texts())
    assert {"/chat/stream", "/v1/chat/completions", "/api/chat", "/v1/models"} <= {
        p.strip().replace("\u200b", "") for p in paths
    }
    assert outside == [], "the docs page fetched from outside the app"
