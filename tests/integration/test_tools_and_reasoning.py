"""Tool calls and reasoning from every provider: byte-exact upstream transcripts (deviations of
real servers included) replayed by fake upstreams on loopback, read through the real SDKs and a
real uvicorn server, and the native events a client receives asserted exactly."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes import transcripts as t
from tests.fakes import wire as w
from tests.fakes.upstream import Reply, Upstream
from tests.sse_client import Received, stream

Serve = Callable[[ASGIApp], str]

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}

SETTINGS: dict[str, dict[str, Any]] = {
    "openai": w.OPENAI_SETTINGS,
    "anthropic": w.ANTHROPIC_SETTINGS,
    "ollama": w.OLLAMA_SETTINGS,
}
CONTENT_TYPES = {"openai": "text/event-stream", "anthropic": "text/event-stream"}


def settings_for(provider: str, url: str) -> Settings:
    values = SETTINGS[provider]
    return Settings(**{k: v(url) if callable(v) else v for k, v in values.items()})


async def replay(
    serve: Serve, client: httpx.AsyncClient, provider: str, transcript: list[bytes], **body: Any
) -> list[tuple[str, Any]]:
    """The native events a client gets when `provider`'s upstream sends `transcript`."""
    content_type = CONTENT_TYPES.get(provider, "application/x-ndjson")
    with Upstream(Reply(body=list(transcript), content_type=content_type)) as up:
        url = serve(create_app(settings_for(provider, up.url)))
        request = {
            "messages": [{"role": "user", "content": "Weather in Paris, and the time?"}],
            "provider": provider,
            "tools": [WEATHER, TIME],
            **body,
        }
        response, events = await stream(client, f"{url}/chat/stream", request)
    assert response.status_code == 200, response.text
    return [parsed(e) for e in events]


def parsed(event: Received) -> tuple[str, Any]:
    if event.event in ("token", "reasoning", "done"):
        return event.event, event.data
    return event.event, json.loads(event.data)


def usage(
    input_tokens: int,
    output_tokens: int,
    reasoning: int | None,
    cached: int | None,
    served: str,
    written: int | None = None,
) -> Any:
    provider, model = served.split("/")
    return (
        "usage",
        {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "estimated": False,
            "reasoning_tokens": reasoning,
            "cached_input_tokens": cached,
            "cache_creation_input_tokens": written,
            "cost_usd": None,  # the fake upstreams are not the providers' own APIs: no price
            "provider": provider,
            "model": model,
        },
    )


def start(id: str, name: str) -> tuple[str, Any]:
    return "tool_call_start", {"id": id, "name": name}


def delta(id: str, arguments: str) -> tuple[str, Any]:
    return "tool_call_delta", {"id": id, "arguments": arguments}


def call(id: str, name: str, arguments: str) -> tuple[str, Any]:
    return "tool_call", {"id": id, "name": name, "arguments": arguments}


# --- OpenAI and compatible servers -----------------------------------------------------------


async def test_openai_parallel_calls_stream_as_fragments_then_whole(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "openai", t.OPENAI_PARALLEL_CALLS)
    assert events == [
        start("call_w", "get_weather"),
        delta("call_w", '{"ci'),
        delta("call_w", 'ty": "Paris"}'),
        start("call_t", "get_time"),
        delta("call_t", "{}"),
        call("call_w", "get_weather", '{"city": "Paris"}'),
        call("call_t", "get_time", "{}"),
        usage(30, 12, 5, 8, "openai/gpt-4o-mini"),
        ("done", "tool_calls"),
    ]


async def test_a_server_that_omits_index_continues_the_call_in_flight(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "openai", t.OPENAI_NO_INDEX)
    assert events[:3] == [
        start("call_a", "get_weather"),
        delta("call_a", '{"city"'),
        delta("call_a", ': "Oslo"}'),
    ]
    assert events[3] == call("call_a", "get_weather", '{"city": "Oslo"}')
    assert events[-1] == ("done", "tool_calls")


async def test_ollama_compatible_index_zero_for_every_parallel_call(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "openai", t.OPENAI_OLLAMA_INDEX_ZERO)
    calls = [e for e in events if e[0] == "tool_call"]
    assert calls == [
        call("call_1", "get_weather", '{"city":"Rome"}'),
        call("call_2", "get_weather", '{"city":"Lima"}'),
    ]


async def test_empty_restated_ids_and_colliding_indices_keep_calls_apart(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "openai", t.OPENAI_EMPTY_IDS_AND_COLLISIONS)
    assert [e for e in events if e[0] == "tool_call"] == [
        call("call_x", "get_weather", '{"city":1}'),
        call("call_y", "get_time", '{"tz":"UTC"}'),
    ]
    # Every fragment went to its own call's stream, in order.
    assert [e[1]["arguments"] for e in events if e[0] == "tool_call_delta"] == [
        '{"c',
        '{"tz":',
        'ity":1}',
        '"UTC"}',
    ]


@pytest.mark.parametrize(
    "transcript",
    [t.OPENAI_REASONING_CONTENT, t.OPENAI_REASONING],
    ids=["reasoning_content (DeepSeek)", "reasoning (vLLM)"],
)
async def test_plain_reasoning_fields_become_one_block_before_the_answer(
    serve: Serve, client: httpx.AsyncClient, transcript: list[bytes]
) -> None:
    events = await replay(serve, client, "openai", transcript)
    assert events == [
        ("reasoning", "Think"),
        ("reasoning", "ing."),
        ("reasoning_done", {"type": "thinking", "text": "Thinking.", "signature": None}),
        ("token", "Answer"),
        usage(30, 12, 5, 8, "openai/gpt-4o-mini"),
        ("done", "stop"),
    ]


async def test_openrouter_reasoning_details_signed_and_encrypted_counted_once(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "openai", t.OPENAI_REASONING_DETAILS)
    assert events[:5] == [
        ("reasoning", "Think"),
        ("reasoning", "ing."),
        ("reasoning_done", {"type": "thinking", "text": "Thinking.", "signature": "sig-1"}),
        ("reasoning_done", {"type": "redacted_thinking", "data": "ENC=="}),
        ("token", "Answer"),
    ]


# --- Anthropic -------------------------------------------------------------------------------


async def test_anthropic_thinking_signature_text_and_tool_use(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "anthropic", t.ANTHROPIC_THINKING_TEXT_TOOL)
    assert events == [
        ("reasoning", "Need the"),
        ("reasoning", " weather."),
        (
            "reasoning_done",
            {"type": "thinking", "text": "Need the weather.", "signature": "EqQBCgIYAh-sig"},
        ),
        ("token", "Checking."),
        start("toolu_01", "get_weather"),
        delta("toolu_01", '{"city": "Pa'),
        delta("toolu_01", 'ris"}'),
        call("toolu_01", "get_weather", '{"city": "Paris"}'),
        # message_delta's usage is cumulative and came twice: the last one counts, not the sum.
        usage(30 + 8, 25, 9, 8, "anthropic/claude-haiku-4-5", written=0),
        ("done", "tool_calls"),
    ]


async def test_anthropic_redacted_thinking_is_a_block_with_its_data(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "anthropic", t.ANTHROPIC_REDACTED)
    assert events[:2] == [
        ("reasoning_done", {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix=="}),
        ("token", "Done."),
    ]


async def test_anthropic_tool_input_cut_at_max_tokens_is_passed_on_as_is(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "anthropic", t.ANTHROPIC_TOOL_CUT_AT_MAX_TOKENS)
    assert events[-3] == call("toolu_02", "get_weather", '{"city": "Par')
    assert events[-1] == ("done", "length")


async def test_anthropic_tool_without_input_has_empty_object_arguments(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "anthropic", t.ANTHROPIC_TOOL_WITHOUT_INPUT)
    assert events[:2] == [start("toolu_03", "get_time"), call("toolu_03", "get_time", "{}")]


# --- Ollama ----------------------------------------------------------------------------------


async def test_ollama_thinking_and_whole_tool_calls(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    events = await replay(serve, client, "ollama", t.OLLAMA_THINKING_AND_CALLS)
    names = [e[0] for e in events]
    assert names == [
        "reasoning",
        "reasoning",
        "reasoning_done",
        *["tool_call_start", "tool_call_delta", "tool_call"] * 2,
        "usage",
        "done",
    ]
    assert events[2] == (
        "reasoning_done",
        {"type": "thinking", "text": "Need both.", "signature": None},
    )
    first, second = (e[1] for e in events if e[0] == "tool_call")
    assert first["id"].startswith("call_")  # Ollama sent none: one is made up
    assert (first["name"], json.loads(first["arguments"])) == ("get_weather", {"city": "Paris"})
    assert second == {"id": "call_o2", "name": "get_time", "arguments": "{}"}
    assert events[-1] == ("done", "tool_calls")  # Ollama says "stop" after calls
