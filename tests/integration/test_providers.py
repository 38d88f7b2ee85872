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


# --- structured output -------------------------------------------------------------------------

PLACE = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
# What each provider's API is sent for OpenAI's response_format: its own field, as its docs name
# it; None where the API has no such thing (a 400 naming response_format, before any call).
SENT: dict[str, dict[str, Any]] = {
    "json_schema": {
        "openai": {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "place", "schema": PLACE, "strict": True},
            }
        },
        "anthropic": {"output_config": {"format": {"type": "json_schema", "schema": PLACE}}},
        "ollama": {"format": PLACE},
        "gemini": {
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": PLACE,
            }
        },
        "bedrock": {},
    },
    "json_object": {
        "openai": {"response_format": {"type": "json_object"}},
        "anthropic": {},  # a JSON schema only
        "ollama": {"format": "json"},
        "gemini": {"generationConfig": {"responseMimeType": "application/json"}},
        "bedrock": {},
    },
}
FORMATS: dict[str, Any] = {
    "json_schema": {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": PLACE, "strict": True},
    },
    "json_object": {"type": "json_object"},
}


def _sent(request: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """Of what `request` sent upstream, the fields `expected` names (a level deep)."""
    sent = request.json()
    return {
        key: {k: sent[key].get(k) for k in value} if key == "generationConfig" else sent.get(key)
        for key, value in expected.items()
    }


@pytest.mark.parametrize("kind", ["json_schema", "json_object"])
async def test_structured_output_goes_as_each_provider_takes_it_or_is_a_400(
    wire: Wire, serve: Serve, kind: str
) -> None:
    import openai

    answer = '{"city": "Paris"}'
    expected = SENT[kind][wire.name]
    with Upstream(reply(wire, wire.stream([answer]))) as up:
        sdk = openai.AsyncOpenAI(base_url=f"{serve(app_for(wire, up))}/v1", api_key="x")
        try:
            asked = sdk.chat.completions.create(
                model=f"{wire.name}/{MODELS[wire.name]}",
                messages=[{"role": "user", "content": "Where is the Eiffel tower? JSON."}],
                response_format=FORMATS[kind],
                max_tokens=50,
            )
            if not expected:
                with pytest.raises(openai.BadRequestError) as refused:
                    await asked
                assert refused.value.body["param"] == "response_format"
                assert wire.name in refused.value.message
                assert up.requests == []
                return
            completion = await asked
        finally:
            await sdk.close()
    assert completion.choices[0].message.content == answer
    [request] = up.requests
    assert _sent(request, expected) == expected


async def test_the_responses_and_messages_formats_are_translated_too(serve: Serve) -> None:
    """`text.format` (the Responses API's, flat) and `output_config.format` (Anthropic's) reach
    another provider as its own structured output, and the Response names its format."""
    import anthropic
    import openai

    wire = WIRES[0]  # OpenAI's Chat Completions upstream
    answer = '{"city": "Paris"}'
    with Upstream(reply(wire, wire.stream([answer]))) as up:
        url = serve(app_for(wire, up, default_provider="openai"))
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x")
        claude = anthropic.AsyncAnthropic(base_url=url, api_key="x")
        flat: Any = {"type": "json_schema", "name": "place", "schema": PLACE, "strict": True}
        try:
            response = await sdk.responses.create(
                model=f"openai/{MODELS['openai']}",
                input="Where?",
                text={"format": flat},
            )
            message = await claude.messages.create(
                model=f"openai/{MODELS['openai']}",
                max_tokens=50,
                messages=[{"role": "user", "content": "Where?"}],
                extra_body={"output_config": {"format": {"type": "json_schema", "schema": PLACE}}},
            )
        finally:
            await sdk.close()
            await claude.close()
    assert response.output_text == answer
    assert response.text.format.type == "json_schema"
    assert message.content[0].text == answer
    formats = [r.json()["response_format"] for r in up.requests]
    assert formats == [
        {"type": "json_schema", "json_schema": {"name": "place", "schema": PLACE, "strict": True}},
        {"type": "json_schema", "json_schema": {"name": "output", "schema": PLACE}},
    ]


async def test_what_a_stream_held_upstream_is_freed_without_the_cycle_collector(
    wire: Wire, serve: Serve, client: httpx.AsyncClient
) -> None:
    """A stream's upstream HTTP response (and, through it, its connection's buffers) is freed by
    reference counting when the stream ends. Held in a reference cycle, it waits for a full
    collection, which a quiet server may not run for minutes: the openai SDK's AsyncStream is
    such a cycle, and 100 clients that never read left 3 MB each behind (bench/nonreaders.py)."""
    import gc

    import httpx2

    with Upstream(reply(wire, wire.stream(["a", "b"]))) as up:
        url = serve(app_for(wire, up))
        await stream(client, f"{url}/chat/stream", body(wire))  # first use: imports, pools
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept in gc.garbage
        try:
            response, events = await stream(client, f"{url}/chat/stream", body(wire))
            await asyncio.sleep(0.3)  # the stream settled: its record written, its tasks done
            gc.collect()
            upstream = [
                o
                for o in gc.garbage
                if isinstance(o, httpx.Response | httpx2.Response) and o.request.url.port == up.port
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert response.status_code == 200
    assert text_of(events) == "ab"
    assert upstream == []
