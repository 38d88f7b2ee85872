"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`), driven by the
official anthropic Python SDK (sync and async, streaming and not, its typed errors) and read raw
off the wire, against a real uvicorn server with the echo provider and scripted ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import (
    Finish,
    ReasoningDelta,
    ReasoningEnd,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamfn.content import Reasoning, ToolCall, tag_signature
from streamfn.providers.echo import sign
from streamfn.settings import Settings
from tests.keys import create_key
from tests.providers import Scripted, spec
from tests.sse_client import Received, stream

Serve = Callable[[ASGIApp], str]
Sync = Callable[..., anthropic.Anthropic]

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def echo_app(**settings: Any) -> ASGIApp:
    return create_app(Settings(**{"echo_delay_ms": 0, "usage_records": False, **settings}))


def scripted_app(*steps: Any, **settings: Any) -> ASGIApp:
    return create_app(
        Settings(**{"usage_records": False, **settings}), providers=[spec(Scripted(*steps))]
    )


@pytest.fixture
def sync_client() -> Iterator[Sync]:
    """`sync_client(url, **options)`: the SDK's client for a server; closed after the test."""
    clients: list[anthropic.Anthropic] = []

    def make(url: str, **options: Any) -> anthropic.Anthropic:
        options = {"api_key": "unused", "max_retries": 0, **options}
        clients.append(anthropic.Anthropic(base_url=url, **options))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
async def async_client() -> AsyncIterator[Callable[[str], anthropic.AsyncAnthropic]]:
    clients: list[anthropic.AsyncAnthropic] = []

    def make(url: str) -> anthropic.AsyncAnthropic:
        clients.append(anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def raw(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], **headers: str
) -> tuple[httpx.Response, list[Received]]:
    body = {"model": "echo", "max_tokens": 100, "stream": True, **body}
    return await stream(client, f"{url}/v1/messages", body, headers=headers or None)


def data(events: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events]


# --- streams, as Anthropic sends them -------------------------------------------------------


async def test_a_stream_is_anthropics_events_each_named_by_its_event_line(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    response, events = await raw(client, serve(echo_app()), {"messages": user("one two three")})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [e.event for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    bodies = data(events)
    # The event line is the data's type, which the SDKs dispatch on.
    assert all(b["type"] == e.event for b, e in zip(bodies, events, strict=True))
    assert all(e.id for e in events)
    start = bodies[0]["message"]
    assert start["id"].startswith("msg_")
    assert (start["role"], start["model"], start["content"]) == ("assistant", "echo", [])
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 4  # the estimate: 13 characters
    assert bodies[2] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [b["delta"] for b in bodies[3:6]] == [
        {"type": "text_delta", "text": t} for t in ("one", " two", " three")
    ]
    assert bodies[7] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 3,
            "output_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cost_usd": None,  # echo has no price
        },
    }


def test_sdk_stream_helpers_assemble_the_message(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    with client.messages.stream(
        model="echo", max_tokens=100, messages=user("hello there world")
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["hello", " there", " world"]
    assert final.content[0].type == "text"
    assert final.content[0].text == "hello there world"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 3)
    assert final.model == "echo"


def test_not_streamed(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    message = client.messages.create(
        model="echo/echo",
        max_tokens=100,
        system="be brief",
        messages=user("hello there"),
    )
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "hello there")
    ]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 2)


async def test_async_client_streams(serve: Serve, async_client: Any) -> None:
    client = async_client(serve(echo_app()))
    async with client.messages.stream(model="echo", max_tokens=50, messages=user("a b")) as s:
        text = "".join([t async for t in s.text_stream])
    assert text == "a b"


def test_claude_codes_beta_route_and_headers(serve: Serve, sync_client: Sync) -> None:
    """`client.beta.messages` posts to `/v1/messages?beta=true` with `anthropic-beta`; an older
    `anthropic-version` is taken as well as the SDK's own."""
    client = sync_client(serve(echo_app()), default_headers={"anthropic-version": "2023-06-01"})
    with client.beta.messages.stream(
        model="echo",
        max_tokens=32000,
        betas=["interleaved-thinking-2025-05-14", "context-management-2025-06-27"],
        messages=user("still here"),
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "still here"


async def test_max_tokens_above_the_cap_is_lowered_to_it_not_refused(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(echo_app(max_tokens_cap=2))
    response, events = await raw(client, url, {"max_tokens": 32000, "messages": user("a b c d")})
    assert response.status_code == 200
    bodies = data(events)
    assert "".join(b["delta"]["text"] for b in bodies if b["type"] == "content_block_delta") == (
        "a b"
    )
    assert bodies[-2]["delta"]["stop_reason"] == "max_tokens"


# What Claude Code (2.1) sent, measured: system text blocks with cache_control, a system-role
# message after the user's, adaptive thinking with output_config, context_management,
# metadata, and tools whose schemas carry $schema (and one deferred).
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "echo",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1;"},
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\nbe kind\n</system-reminder>\n"},
                {"type": "text", "text": "say PONG", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": "# Environment\nlinux"}]},
    ],
    "tools": [
        {**WEATHER, "name": "Bash"},
        {
            "name": "DeferredToolPlaceholder",
            "description": "x",
            "input_schema": {"type": "object", "properties": {}},
            "defer_loading": True,
        },
    ],
    "metadata": {"user_id": '{"device_id":"d","session_id":"s"}'},
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "medium"},
    "temperature": 1,
}


async def test_what_claude_code_sends_gets_a_stream(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    response, events = await stream(
        client,
        f"{serve(echo_app())}/v1/messages?beta=true",
        CLAUDE_CODE_BODY,
        headers={
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
            "x-app": "cli",
        },
    )
    assert response.status_code == 200, response.text
    bodies = data(events)
    kinds = [b["content_block"]["type"] for b in bodies if b["type"] == "content_block_start"]
    assert kinds == ["thinking", "text"]  # adaptive thinking: the echo provider reasons
    text = "".join(
        b["delta"]["text"] for b in bodies if b.get("delta", {}).get("type") == "text_delta"
    )
    assert text.endswith("say PONG")
    assert bodies[-1] == {"type": "message_stop"}


async def test_keepalives_are_ping_events_as_anthropic_sends_them(
    serve: Serve, client: httpx.AsyncClient, sync_client: Sync
) -> None:
    steps = (TextDelta("slow"), 0.5, TextDelta(" answer"), Finish("stop", Usage(1, 2)))
    url = serve(scripted_app(*steps, keepalive_s=0.1))
    response, events = await raw(client, url, {"messages": user("hi")})
    assert response.status_code == 200
    names = [e.event for e in events]
    between = names[names.index("content_block_delta") + 1 : -3]
    assert between.count("ping") >= 3, names
    assert {json.loads(e.data)["type"] for e in events if e.event == "ping"} == {"ping"}
    with sync_client(url).messages.stream(model="echo", max_tokens=9, messages=user("hi")) as s:
        assert s.get_final_text() == "slow answer"


async def test_the_routes_are_documented_in_anthropics_shapes(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    paths = (await client.get(f"{serve(echo_app())}/openapi.json")).json()["paths"]
    messages = paths["/v1/messages"]["post"]["responses"]
    assert {"200", "401", "403", "404", "413", "415", "429", "500", "504", "529"} <= set(messages)
    assert "502" not in messages  # Anthropic's API has none: a provider's failure is a 500
    stream = messages["200"]["content"]["text/event-stream"]["itemSchema"]
    assert set(stream["properties"]["event"]["enum"]) == {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
    error = messages["529"]["content"]["application/json"]["schema"]
    assert error["required"] == ["type", "error"]
    counting = paths["/v1/messages/count_tokens"]["post"]["responses"]
    assert {"200", "401", "403", "404", "413", "415", "429", "529"} <= set(counting)


async def test_head_of_the_root_answers(serve: Serve, client: httpx.AsyncClient) -> None:
    """Claude Code checks its base URL with HEAD / first."""
    response = await client.head(f"{serve(echo_app())}/")
    assert response.status_code == 200


# --- auth ---------------------------------------------------------------------------------


def test_streamfn_keys_as_x_api_key_or_bearer(
    serve: Serve, sync_client: Sync, tmp_path: Path
) -> None:
    db = tmp_path / "keys.sqlite3"
    key, _ = create_key(db)
    url = serve(echo_app(auth="api_key", keys_db=db))
    by_header = sync_client(url, api_key=key)
    assert by_header.messages.create(model="echo", max_tokens=9, messages=user("hi")).content
    bearer = sync_client(url, api_key=None, auth_token=key)
    assert bearer.messages.create(model="echo", max_tokens=9, messages=user("hi")).content
    with pytest.raises(anthropic.AuthenticationError) as refused:
        sync_client(url, api_key="sf_wrong").messages.create(
            model="echo", max_tokens=9, messages=user("hi")
        )
    assert refused.value.status_code == 401
    assert refused.value.body["type"] == "error"  # type: ignore[index]
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


# --- errors --------------------------------------------------------------------------------


def test_errors_before_the_stream_are_anthropics_statuses_and_types(
    serve: Serve, sync_client: Sync
) -> None:
    def refused(app: ASGIApp, **body: Any) -> anthropic.APIStatusError:
        client = sync_client(serve(app))
        request = {"model": "echo", "max_tokens": 9, "messages": user("hi"), **body}
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(**request)
        error = caught.value
        assert isinstance(error.body, dict)
        assert error.body["type"] == "error"
        assert set(error.body["error"]) == {"type", "message"}
        return error

    limited = refused(scripted_app(StreamError("rate_limit", "slow down", True, 3)))
    assert isinstance(limited, anthropic.RateLimitError)
    assert limited.response.headers["retry-after"] == "3"
    assert limited.type == "rate_limit_error"

    overloaded = refused(scripted_app(StreamError("overloaded", "busy", True)))
    assert isinstance(overloaded, anthropic.OverloadedError)
    assert (overloaded.status_code, overloaded.type) == (529, "overloaded_error")

    broken = refused(scripted_app(StreamError("upstream_unavailable", "it broke", True)))
    assert isinstance(broken, anthropic.InternalServerError)
    assert (broken.status_code, broken.type) == (500, "api_error")

    timed_out = refused(scripted_app(StreamError("timeout", "no first token", True)))
    assert (timed_out.status_code, timed_out.type) == (504, "timeout_error")

    unknown = refused(echo_app(), model="echo/no-such-model")
    assert isinstance(unknown, anthropic.NotFoundError)
    assert unknown.type == "not_found_error"
    assert "no-such-model" in unknown.message

    forbidden = refused(echo_app(allowed_models=["openai/*"]))
    assert isinstance(forbidden, anthropic.PermissionDeniedError)
    assert forbidden.type == "permission_error"

    bad = refused(echo_app(), tool_choice={"type": "sometimes"})
    assert isinstance(bad, anthropic.BadRequestError)
    assert bad.type == "invalid_request_error"
    assert "tool_choice" in bad.message

    too_large = refused(echo_app(max_body_bytes=200), system="x" * 300)
    assert (too_large.status_code, too_large.type) == (413, "request_too_large")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),  # required, as Anthropic has it
        ({"max_tokens": "5"}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content.0"),
        ({"tools": [{"name": "t"}]}, "tools.0.input_schema"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format"),
        ({"top_k": 5}, "top_k"),
    ],
)
async def test_a_body_that_cannot_be_served_is_a_400_naming_the_field(
    serve: Serve, client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    request = {"model": "echo", "max_tokens": 9, "messages": user("hi"), **body}
    request = {k: v for k, v in request.items() if v is not None}
    response = await client.post(f"{serve(echo_app())}/v1/messages", json=request)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert field in error["error"]["message"]


async def test_an_error_after_the_first_token_is_an_error_event(
    serve: Serve, client: httpx.AsyncClient, sync_client: Sync
) -> None:
    url = serve(scripted_app(TextDelta("partial"), StreamError("overloaded", "it broke", True)))
    response, events = await raw(client, url, {"messages": user("hi")})
    assert response.status_code == 200
    assert [e.event for e in events][-2:] == ["content_block_delta", "error"]
    assert json.loads(events[-1].data) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "it broke"},
    }
    # The SDK raises it, with what came before it received.
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        sync_client(url).messages.stream(model="echo", max_tokens=9, messages=user("hi")) as s,
    ):
        received.extend(s.text_stream)
    assert received == ["partial"]


# --- tools ---------------------------------------------------------------------------------


def test_a_tool_round_trip_with_the_sdk(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    ask = user('Checking.\n/call get_weather {"city": "Paris"}')
    with client.messages.stream(
        model="echo", max_tokens=100, messages=ask, tools=[WEATHER]
    ) as stream:
        fragments = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    text, call = final.content
    assert (text.type, getattr(text, "text", None)) == ("text", "Checking.")
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    assert len(fragments) > 1  # streamed in pieces, as they came
    assert "".join(fragments) == '{"city": "Paris"}'

    answer = client.messages.create(
        model="echo",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            *ask,
            final.to_param(),
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}],
            },
        ],
    )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "get_weather returned 18C"
    assert answer.stop_reason == "end_turn"


def test_a_tool_result_of_blocks_claude_codes_tool_search_included(
    serve: Serve, sync_client: Sync
) -> None:
    """A result's text blocks are its text; a `tool_reference` (Claude Code's ToolSearch
    loading a deferred tool) says the tool is there, as every tool is for other providers."""
    client = sync_client(serve(echo_app()))
    call = {"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"q": "x"}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [
            {"type": "text", "text": "found:"},
            {"type": "tool_reference", "tool_name": "mcp__db__query"},
        ],
    }
    search = {**WEATHER, "name": "ToolSearch"}
    deferred = {**WEATHER, "name": "mcp__db__query", "defer_loading": True}
    answer = client.messages.create(
        model="echo",
        max_tokens=100,
        tools=[search, deferred],  # type: ignore[list-item]
        messages=[
            *user("find the db tool"),
            {"role": "assistant", "content": [call]},  # type: ignore[list-item]
            {"role": "user", "content": [result]},  # type: ignore[list-item]
        ],
    )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "ToolSearch returned found:\n[tool available: mcp__db__query]"


async def test_parallel_calls_interleaved_become_sequential_blocks_streamed_as_they_come(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    """Two calls whose fragments arrive interleaved (as OpenAI streams parallel calls): the
    first streams as it comes, the second waits and follows whole; text after a call opens,
    too, waits for it to end."""
    a = ToolCall("call_a", "get_weather", '{"city": "Oslo"}')
    b = ToolCall("call_b", "get_weather", '{"city": "Rome"}')
    url = serve(
        scripted_app(
            TextDelta("Both."),
            ToolCallStart("call_a", "get_weather"),
            ToolCallDelta("call_a", '{"city": '),
            ToolCallStart("call_b", "get_weather"),
            ToolCallDelta("call_b", '{"city": "Rome"}'),
            ToolCallDelta("call_a", '"Oslo"}'),
            TextDelta(" Late."),
            ToolCallEnd(b),
            ToolCallEnd(a),
            Finish("tool_calls", Usage(5, 9)),
        )
    )
    response, events = await raw(client, url, {"messages": user("hi"), "tools": [WEATHER]})
    assert response.status_code == 200
    bodies = data(events)[2:-2]  # between message_start, ping and message_delta, message_stop
    shape = []
    for body in bodies:
        delta = body.get("delta", {})
        block = body.get("content_block", {})
        detail = delta.get("text") or delta.get("partial_json") or block.get("id") or ""
        shape.append((body["type"].removeprefix("content_block_"), body["index"], detail))
    assert shape == [
        ("start", 0, ""),
        ("delta", 0, "Both."),
        ("stop", 0, ""),
        ("start", 1, "call_a"),
        ("delta", 1, '{"city": '),
        ("delta", 1, '"Oslo"}'),
        ("stop", 1, ""),
        ("start", 2, "call_b"),
        ("delta", 2, '{"city": "Rome"}'),
        ("stop", 2, ""),
        ("start", 3, ""),
        ("delta", 3, " Late."),
        ("stop", 3, ""),
    ]
    assert data(events)[-2]["delta"]["stop_reason"] == "tool_use"


async def test_a_calls_fragments_go_out_before_it_ends(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    """Never held to the block's end: the first fragment is on the wire while the provider is
    still producing the rest."""
    call = ToolCall("call_s", "get_weather", '{"city": "Oslo"}')
    url = serve(
        scripted_app(
            ToolCallStart("call_s", "get_weather"),
            ToolCallDelta("call_s", '{"city": '),
            0.5,
            ToolCallDelta("call_s", '"Oslo"}'),
            ToolCallEnd(call),
            Finish("tool_calls", Usage(5, 9)),
        )
    )
    _, events = await raw(client, url, {"messages": user("hi"), "tools": [WEATHER]})
    deltas = [e for e in events if e.event == "content_block_delta"]
    stop = next(e for e in events if e.event == "content_block_stop")
    assert stop.at - deltas[0].at > 0.4


# --- thinking ------------------------------------------------------------------------------


def test_thinking_streams_with_its_signature_and_goes_back_verified(
    serve: Serve, sync_client: Sync
) -> None:
    client = sync_client(serve(echo_app()))
    ask = '/call get_weather {"city": "Oslo"}'
    with client.messages.stream(
        model="echo",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER],
        messages=user(ask),
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert {"thinking", "signature"} <= set(events)
    thinking, call = final.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "The user wrote 4 words. I will repeat them exactly."
    assert thinking.signature == sign(thinking.thinking)
    assert call.type == "tool_use"
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "cold"}
    turn = [*user(ask), final.to_param(), {"role": "user", "content": [result]}]
    answer = client.messages.create(model="echo", max_tokens=2000, tools=[WEATHER], messages=turn)
    assert answer.content[-1].type == "text"
    assert answer.content[-1].text == "get_weather returned cold"

    # Changed, the block fails the signature check: the client gets the 400.
    changed = {**final.to_param(), "content": [{**thinking.model_dump(), "thinking": "Other."}]}
    changed["content"].append(call.model_dump(exclude_none=True))
    with pytest.raises(anthropic.BadRequestError, match="signature does not match"):
        client.messages.create(
            model="echo",
            max_tokens=2000,
            tools=[WEATHER],
            messages=[*user(ask), changed, {"role": "user", "content": [result]}],
        )


async def test_redacted_and_other_providers_signed_thinking(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    """A redacted block says so at its start, with its data; another provider's signature
    travels tagged, as its `signature_delta`."""
    gemini = tag_signature("gemini", "R2VtaW5p")
    url = serve(
        scripted_app(
            ReasoningEnd(Reasoning(redacted="EmwKAhgB")),
            ReasoningDelta("Hmm."),
            ReasoningEnd(Reasoning("Hmm.", gemini)),
            TextDelta("Done."),
            ReasoningEnd(Reasoning("", tag_signature("gemini", "dGV4dA"))),
            Finish("stop", Usage(5, 9, reasoning_tokens=4)),
        )
    )
    response, events = await raw(client, url, {"messages": user("hi")})
    assert response.status_code == 200
    bodies = data(events)[2:]
    assert bodies[0]["content_block"] == {"type": "redacted_thinking", "data": "EmwKAhgB"}
    assert bodies[1] == {"type": "content_block_stop", "index": 0}
    assert bodies[2]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert bodies[3]["delta"] == {"type": "thinking_delta", "thinking": "Hmm."}
    assert bodies[4]["delta"] == {"type": "signature_delta", "signature": gemini}
    assert bodies[6]["content_block"]["type"] == "text"
    # A signature that came after the text (Gemini's, on a text part) is a block of its own.
    assert [b["type"] for b in bodies[9:12]] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    ]
    assert bodies[10]["delta"]["type"] == "signature_delta"
    assert bodies[-2]["usage"]["output_tokens_details"] == {"thinking_tokens": 4}


# --- count_tokens --------------------------------------------------------------------------


def test_count_tokens_is_an_estimate_marked_as_one_where_no_provider_counts(
    serve: Serve, sync_client: Sync
) -> None:
    client = sync_client(serve(echo_app()))
    counted = client.messages.count_tokens(
        model="echo", system="x" * 40, messages=user("y" * 40), tools=[WEATHER]
    )
    tools = (
        len("get_weather")
        + len(WEATHER["description"])
        + len(  # type: ignore[arg-type]
            json.dumps(WEATHER["input_schema"], separators=(",", ":"))
        )
    )
    assert counted.input_tokens == (81 + tools + 3) // 4
    assert counted.model_extra == {"estimated": True}

    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="echo/nothing", messages=user("hi"))


# --- routing -------------------------------------------------------------------------------


def test_the_sdks_models_list(serve: Serve, sync_client: Sync) -> None:
    models = list(sync_client(serve(echo_app())).models.list())
    assert [(m.id, m.type, m.display_name) for m in models] == [
        ("echo/echo", "model", "echo/echo"),
        ("ollama/llama3.2", "model", "ollama/llama3.2"),
    ]


def test_model_aliases_route_the_names_a_client_insists_on(serve: Serve, sync_client: Sync) -> None:
    url = serve(echo_app(model_aliases={"claude-opus-5-5": "echo/echo", "claude-*": "echo"}))
    client = sync_client(url)
    for model in ("claude-opus-5-5", "claude-haiku-4-5-20251001"):
        message = client.messages.create(model=model, max_tokens=9, messages=user("hi"))
        assert message.content[0].type == "text"
        assert message.model == model  # the name asked for, as Anthropic answers
    with pytest.raises(anthropic.NotFoundError):  # no alias, and echo has no such model
        sync_client(serve(echo_app())).messages.create(
            model="claude-opus-5-5", max_tokens=9, messages=user("hi")
        )
