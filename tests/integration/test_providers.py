"""Every provider through the real SDK (or httpx, for Ollama) against a fake upstream on loopback
that speaks its wire format, served to a real SSE client by a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes.bedrock import BEDROCK
from tests.fakes.gemini import GEMINI
from tests.fakes.upstream import Action, Reply, Upstream
from tests.fakes.wire import CONVERSATION, SECRET, WIRES, Wire
from tests.sse_client import leave_after_tokens, stream, text_of

Serve = Callable[[ASGIApp], str]

MODELS = {
    "openai": "gpt-test-model",
    "anthropic": "claude-test-model",
    "ollama": "llama-test-model",
    "gemini": "gemini-test-model",
    "bedrock": "bedrock-test-model",
}
ALL_WIRES = [*WIRES, GEMINI, BEDROCK]


@pytest.fixture(params=ALL_WIRES, ids=[w.name for w in ALL_WIRES])
def wire(request: pytest.FixtureRequest) -> Wire:
    return request.param  # type: ignore[no-any-return]


def body(wire: Wire, **extra: Any) -> dict[str, Any]:
    return {
        "messages": CONVERSATION,
        "provider": wire.name,
        "model": MODELS[wire.name],
        "max_tokens": 50,
        "temperature": 0.5,
        "stop": "STOP",
        **extra,
    }


def app_for(wire: Wire, upstream: Upstream, **settings: Any) -> ASGIApp:
    return create_app(Settings(**wire.settings(upstream.url), **settings))


def reply(wire: Wire, steps: list[Any], status: int = 200, **headers: str) -> Reply:
    content_type = wire.content_type if status < 400 else "application/json"
    return Reply(status=status, body=steps, headers=headers, content_type=content_type)


async def test_streams_text_and_usage_and_sends_the_whole_conversation(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    tokens = ["Three", " short", " words\n"]
    with Upstream(reply(wire, wire.stream(tokens))) as up:
        url = serve(app_for(wire, up))
        response, events = await stream(client, f"{url}/chat/stream", body(wire))
    assert response.status_code == 200
    assert text_of(events) == "Three short words\n"
    assert [e.event for e in events] == ["token"] * 3 + ["usage", "done"]
    usage = json.loads(events[-2].data)
    assert {k: usage[k] for k in ("input_tokens", "output_tokens", "estimated")} == {
        "input_tokens": 11,
        "output_tokens": 3,
        "estimated": False,
    }
    assert events[-1].data == "stop"
    [request] = up.requests
    assert request.method == "POST"
    assert request.path == wire.path
    wire.check_request(request)


async def test_401_is_502_without_the_key(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    error = wire.status_error(f"Incorrect API key provided: {SECRET}")
    with Upstream(reply(wire, [error], status=401)) as up:
        url = serve(app_for(wire, up))
        response = await client.post(f"{url}/chat/stream", json=body(wire))
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "auth"
    assert response.json()["error"]["retryable"] is False
    assert "Incorrect API key provided: [redacted]" in response.json()["error"]["message"]
    assert SECRET not in response.text
    assert "authorization" not in response.text.lower()


async def test_429_keeps_retry_after(wire: Wire, serve: Serve, client: httpx.AsyncClient) -> None:
    error = wire.status_error("Rate limit reached")
    with Upstream(reply(wire, [error], status=429, **{"retry-after": "7"})) as up:
        url = serve(app_for(wire, up))
        response = await client.post(f"{url}/chat/stream", json=body(wire))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    error_body = response.json()["error"]
    assert error_body["type"] == "rate_limit"
    assert error_body["retryable"] is True
    assert "Rate limit reached" in error_body["message"]
    assert len(up.requests) == 1, "no retry unless STREAMFN_UPSTREAM_RETRIES asks for it"


async def test_500_before_first_token_is_502(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(reply(wire, [wire.status_error("boom")], status=500)) as up:
        url = serve(app_for(wire, up))
        response = await client.post(f"{url}/chat/stream", json=body(wire))
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_unavailable"
    assert response.json()["error"]["retryable"] is True


async def test_unreachable_upstream_is_502(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    url = serve(create_app(Settings(**wire.settings(dead))))
    response = await client.post(f"{url}/chat/stream", json=body(wire))
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_unavailable"


async def test_error_event_mid_stream(wire: Wire, serve: Serve, client: httpx.AsyncClient) -> None:
    steps = [*wire.head, wire.token("Hel"), wire.token("lo"), wire.mid_error]
    with Upstream(reply(wire, steps)) as up:
        url = serve(app_for(wire, up))
        response, events = await stream(client, f"{url}/chat/stream", body(wire))
    assert response.status_code == 200
    assert [e.event for e in events] == ["token", "token", "error"]
    error = json.loads(events[-1].data)
    assert error["type"] == wire.mid_error_type
    assert error["retryable"] is True


@pytest.mark.parametrize(
    ("cut", "error_type"),
    [
        (Action.RESET, "upstream_unavailable"),  # TCP RST mid-body
        (Action.CLOSE, "upstream_unavailable"),  # closed before the chunked body ended
        (Action.END, "upstream_error"),  # body ended cleanly, but without a finish or [DONE]
    ],
    ids=["reset", "truncated", "no-finish"],
)
async def test_stream_cut_short_is_an_error_not_a_clean_end(
    wire: Wire, serve: Serve, client: httpx.AsyncClient, cut: Action, error_type: str
) -> None:
    steps = [*wire.head, wire.token("Hel"), 0.2, cut, wire.token("never")]
    with Upstream(reply(wire, steps)) as up:
        url = serve(app_for(wire, up))
        response, events = await stream(client, f"{url}/chat/stream", body(wire))
    assert response.status_code == 200
    assert [e.event for e in events] == ["token", "error"]
    assert json.loads(events[-1].data)["type"] == error_type


async def test_malformed_line_is_an_error(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    steps = [*wire.head, wire.token("Hel"), wire.malformed, wire.token("lo")]
    with Upstream(reply(wire, steps)) as up:
        url = serve(app_for(wire, up))
        _, events = await stream(client, f"{url}/chat/stream", body(wire))
    assert [e.event for e in events] == ["token", "error"]
    error = json.loads(events[-1].data)
    assert error["type"] == "upstream_error"
    assert "malformed" in error["message"]


async def test_first_token_timeout_is_504_and_cancels_upstream(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(reply(wire, [*wire.head, 10.0, *wire.stream(["late"])])) as up:
        url = serve(app_for(wire, up, first_token_timeout_s=0.3))
        started = time.monotonic()
        response = await client.post(f"{url}/chat/stream", json=body(wire))
        assert response.status_code == 504
        assert response.json()["error"]["type"] == "timeout"
        assert time.monotonic() - started < 2
        assert await asyncio.to_thread(up.client_closed.wait, 1.0), "upstream request left open"


async def test_idle_timeout_is_an_error_event_and_cancels_upstream(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    steps = [*wire.head, wire.token("Hel"), 10.0, *wire.stream(["late"])]
    with Upstream(reply(wire, steps)) as up:
        url = serve(app_for(wire, up, idle_timeout_s=0.3))
        _, events = await stream(client, f"{url}/chat/stream", body(wire))
        assert [e.event for e in events] == ["token", "error"]
        assert json.loads(events[-1].data)["type"] == "timeout"
        assert await asyncio.to_thread(up.client_closed.wait, 1.0), "upstream request left open"


async def test_client_disconnect_closes_the_upstream_connection_within_1s(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    words = [x for i in range(100) for x in (wire.token(f" w{i}"), 0.05)]
    with Upstream(reply(wire, [*wire.head, *words, *wire.stream([])])) as up:
        url = serve(app_for(wire, up, resume_grace_s=0))
        left_at = await leave_after_tokens(client, f"{url}/chat/stream", body(wire))
        assert await asyncio.to_thread(up.client_closed.wait, 1.0), "upstream request left open"
        assert up.client_closed_at is not None
        assert up.client_closed_at - left_at < 1.0
