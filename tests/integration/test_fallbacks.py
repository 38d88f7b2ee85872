"""Retries and fallbacks before the first token, through a real server and fake upstreams that
fail in each way: what served is in the response header, the usage event and the usage record;
nothing is retried after the first token, nor after a failure that is not retryable."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes import wire as w
from tests.fakes.upstream import Action, Recorded, Reply, Upstream
from tests.sse_client import stream, text_of, user

Serve = Callable[[ASGIApp], str]
ERROR_503 = Reply(503, [b'{"error":{"message":"busy"}}'], content_type="application/json")


def app_for(openai: Upstream, anthropic: Upstream | None = None, **settings: Any) -> ASGIApp:
    values: dict[str, Any] = {
        "openai_api_key": w.SECRET,
        "openai_base_url": f"{openai.url}/v1",
        "default_provider": "openai",
        "usage_records": False,
        **settings,
    }
    if anthropic is not None:
        values |= {"anthropic_api_key": w.SECRET, "anthropic_base_url": anthropic.url}
    return create_app(Settings(**values))


def usage_event(events: list[Any]) -> dict[str, Any]:
    return dict(json.loads(next(e.data for e in events if e.event == "usage")))


async def test_a_retryable_failure_is_retried_and_the_retry_serves(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(ERROR_503, Reply(body=w.openai_stream(["second", " try"]))) as up:
        url = serve(app_for(up, upstream_retries=1))
        response, events = await stream(client, f"{url}/chat/stream", user("hi"))
    assert response.status_code == 200
    assert text_of(events) == "second try"
    assert len(up.requests) == 2
    assert response.headers["x-streamfn-served-by"] == "openai/gpt-4o-mini"


async def test_retry_after_is_honoured_up_to_the_cap(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    arrived: list[float] = []
    limited = Reply(429, [b'{"error":{"message":"slow down"}}'], {"retry-after": "0.4"})
    replies = [limited, Reply(body=w.openai_stream(["ok"]))]

    def answer(_: Recorded) -> Reply:
        arrived.append(time.monotonic())
        return replies[len(arrived) - 1]

    with Upstream(answer) as up:
        url = serve(app_for(up, upstream_retries=2))
        _, events = await stream(client, f"{url}/chat/stream", user("hi"))
    assert text_of(events) == "ok"
    assert arrived[1] - arrived[0] >= 0.4  # it waited as told before trying again
    # Beyond the cap (retry_max_wait_s), it does not wait: the 429 goes to the client.
    with Upstream(Reply(429, [b"{}"], {"retry-after": "30"})) as up:
        url = serve(app_for(up, upstream_retries=2, retry_max_wait_s=1))
        started = time.monotonic()
        refused = await client.post(f"{url}/chat/stream", json=user("hi"))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "30"
    assert len(up.requests) == 1
    assert time.monotonic() - started < 5


async def test_a_fallback_serves_when_the_provider_fails_before_its_first_token(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    with (
        Upstream(ERROR_503) as openai,
        Upstream(Reply(body=w.anthropic_stream(["from", " anthropic"]))) as anthropic,
    ):
        url = serve(app_for(openai, anthropic, usage_records=True, usage_db=db))
        body = user("hi", fallbacks=["anthropic/claude-fallback-1"])
        response, events = await stream(client, f"{url}/chat/stream", body)
    assert text_of(events) == "from anthropic"
    assert response.headers["x-streamfn-served-by"] == "anthropic/claude-fallback-1"
    usage = usage_event(events)
    assert (usage["provider"], usage["model"]) == ("anthropic", "claude-fallback-1")
    assert anthropic.requests[0].json()["model"] == "claude-fallback-1"
    rows: list[Any] = []
    for _ in range(50):  # the record is written just after the response's last byte
        if db.exists():
            with sqlite3.connect(db) as connection:
                try:
                    rows = connection.execute(
                        # Settled: the record as opened (status 0) is replaced after the end.
                        "SELECT provider, model, outcome FROM usage WHERE status != 0"
                    ).fetchall()
                except sqlite3.OperationalError:  # the table is not made yet
                    rows = []
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows == [("anthropic", "claude-fallback-1", "finished")]


async def test_a_provider_without_a_first_token_leaves_its_fallback_time(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    silent = Reply(body=[w.OPENAI_ROLE, 30.0])  # headers and a role, then nothing
    with (
        Upstream(silent) as openai,
        Upstream(Reply(body=w.anthropic_stream(["in", " time"]))) as anthropic,
    ):
        url = serve(app_for(openai, anthropic, first_token_timeout_s=2))
        response, events = await stream(
            client, f"{url}/chat/stream", user("hi", fallbacks=["anthropic"])
        )
        assert openai.client_closed.wait(2)  # the silent request was cancelled, not left open
    assert text_of(events) == "in time"
    assert response.headers["x-streamfn-served-by"] == "anthropic/claude-haiku-4-5"


async def test_configured_fallbacks_apply_without_the_request_naming_any(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with (
        Upstream(Reply(body=[Action.RESET])) as openai,  # the connection breaks
        Upstream(Reply(body=w.anthropic_stream(["configured"]))) as anthropic,
    ):
        url = serve(app_for(openai, anthropic, fallbacks={"openai": ["anthropic"]}))
        response, events = await stream(client, f"{url}/chat/stream", user("hi"))
    assert text_of(events) == "configured"
    assert response.headers["x-streamfn-served-by"] == "anthropic/claude-haiku-4-5"


async def test_no_fallback_after_a_failure_that_is_not_retryable(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    refused_key = Reply(401, [b'{"error":{"message":"bad key"}}'], content_type="application/json")
    with Upstream(refused_key) as openai, Upstream(Reply(body=w.anthropic_stream(["x"]))) as other:
        url = serve(app_for(openai, other, upstream_retries=2))
        response = await client.post(f"{url}/chat/stream", json=user("hi", fallbacks=["anthropic"]))
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "auth"
    assert len(openai.requests) == 1
    assert other.requests == []


async def test_after_the_first_token_a_failure_is_an_error_event_not_a_fallback(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    broken = Reply(body=[w.OPENAI_ROLE, w.openai_chunk("partial"), Action.RESET])
    with Upstream(broken) as openai, Upstream(Reply(body=w.anthropic_stream(["x"]))) as other:
        url = serve(app_for(openai, other, upstream_retries=2))
        response, events = await stream(
            client, f"{url}/chat/stream", user("hi", fallbacks=["anthropic"])
        )
    assert response.status_code == 200
    assert text_of(events) == "partial"
    assert events[-1].event == "error"
    assert len(openai.requests) == 1
    assert other.requests == []


async def test_openai_models_list_falls_back_with_the_official_sdk(serve: Serve) -> None:
    with (
        Upstream(ERROR_503) as openai,
        Upstream(Reply(body=w.anthropic_stream(["via", " models"]))) as anthropic,
    ):
        url = serve(app_for(openai, anthropic))
        sdk = AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        raw = await sdk.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"models": ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"]},
        )
        completion = raw.parse()
        await sdk.close()
    assert completion.choices[0].message.content == "via models"
    assert raw.headers["x-streamfn-served-by"] == "anthropic/claude-haiku-4-5"


async def test_after_an_early_commit_a_failure_is_an_error_event_and_fallbacks_still_run(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    slow_failure = Reply(body=[w.OPENAI_ROLE, 0.6, b'data: {"error": {"message": "boom"}}\n\n'])
    with Upstream(slow_failure) as openai:
        url = serve(app_for(openai, early_commit_s=0.2))
        response, events = await stream(client, f"{url}/chat/stream", user("hi"))
    assert response.status_code == 200  # committed before the failure: no HTTP status for it
    assert [e.event for e in events] == ["error"]
    assert "boom" in json.loads(events[0].data)["message"]
    # No content had been sent, so a fallback can still answer after the early commit.
    with (
        Upstream(slow_failure) as openai,
        Upstream(Reply(body=w.anthropic_stream(["rescued"]))) as anthropic,
    ):
        url = serve(app_for(openai, anthropic, early_commit_s=0.2))
        response, events = await stream(
            client, f"{url}/chat/stream", user("hi", fallbacks=["anthropic"])
        )
    assert response.status_code == 200
    assert text_of(events) == "rescued"
    assert "x-streamfn-served-by" not in response.headers  # sent before anything served
    assert usage_event(events)["provider"] == "anthropic"


async def test_the_ai_sdk_stream_names_the_fallback_that_answered(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with (
        Upstream(ERROR_503) as openai,
        Upstream(Reply(body=w.anthropic_stream(["ui"]))) as anthropic,
    ):
        url = serve(app_for(openai, anthropic))
        body = {
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
            "fallbacks": ["anthropic"],
        }
        response, events = await stream(client, f"{url}/api/chat", body)
    parts = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == "ui"
    [finish] = [p for p in parts if p["type"] == "finish"]
    assert finish["messageMetadata"]["provider"] == "anthropic"
    assert finish["messageMetadata"]["model"] == "claude-haiku-4-5"
    assert response.headers["x-streamfn-served-by"] == "anthropic/claude-haiku-4-5"
