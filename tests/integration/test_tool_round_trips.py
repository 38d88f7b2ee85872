"""Conversations that go beyond text, through a real server to each provider's fake upstream:
tool round trips with parallel calls, Anthropic's signed thinking carried across turns, images,
and the tool and reasoning options, each checked in the upstream's own request format."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from tests.fakes import transcripts as t
from tests.fakes.upstream import Recorded, Reply, Upstream
from tests.integration.test_tools_and_reasoning import CONTENT_TYPES, TIME, WEATHER, settings_for
from tests.sse_client import stream

Serve = Callable[[ASGIApp], str]

# A real 1x1 PNG.
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)
PNG_URL = f"data:image/png;base64,{PNG}"
HTTPS_IMAGE = "https://example.com/cat.jpg"

CALLS = {"openai": t.OPENAI_PARALLEL_CALLS, "anthropic": t.ANTHROPIC_THINKING_TWO_TOOLS}
CALLS["ollama"] = t.OLLAMA_THINKING_AND_CALLS
ANSWERS = {"openai": t.OPENAI_ANSWER, "anthropic": t.ANTHROPIC_ANSWER, "ollama": t.OLLAMA_ANSWER}
RESULTS = {"get_weather": "18C", "get_time": "noon"}
QUESTION = {"role": "user", "content": "Weather in Paris, and the time?"}


def reply(provider: str, body: list[bytes]) -> Reply:
    return Reply(body=list(body), content_type=CONTENT_TYPES.get(provider, "application/x-ndjson"))


def anthropic_checks_its_signature(request: Recorded) -> Reply:
    """Anthropic's rule: a thinking block sent back must be unchanged, signature and all."""
    assistant = request.json()["messages"][1]
    thinking = assistant["content"][0]
    if thinking != {
        "type": "thinking",
        "thinking": "Need the weather.",
        "signature": "EqQBCgIYAh-sig",
    }:
        error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
        return Reply(status=400, body=[json.dumps(error).encode()], content_type="application/json")
    return reply("anthropic", t.ANTHROPIC_ANSWER)


def answer(provider: str) -> Reply | Callable[[Recorded], Reply]:
    if provider == "anthropic":
        return anthropic_checks_its_signature
    return reply(provider, ANSWERS[provider])


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_tool_round_trip_with_two_parallel_calls(
    serve: Serve, client: httpx.AsyncClient, provider: str
) -> None:
    with Upstream(reply(provider, CALLS[provider]), answer(provider)) as up:
        url = serve(create_app(settings_for(provider, up.url)))
        first = {"messages": [QUESTION], "provider": provider, "tools": [WEATHER, TIME]}
        response, events = await stream(client, f"{url}/chat/stream", first)
        assert response.status_code == 200
        assert events[-1].data == "tool_calls"
        calls = [json.loads(e.data) for e in events if e.event == "tool_call"]
        reasoning = [json.loads(e.data) for e in events if e.event == "reasoning_done"]
        assert [c["name"] for c in calls] == ["get_weather", "get_time"]

        # The client runs the tools and sends the results back with the model's turn.
        turn = {"role": "assistant", "content": "", "tool_calls": calls, "reasoning": reasoning}
        results = [
            {"role": "tool", "tool_call_id": c["id"], "content": RESULTS[c["name"]]} for c in calls
        ]
        second = {**first, "messages": [QUESTION, turn, *results]}
        response, events = await stream(client, f"{url}/chat/stream", second)
    assert response.status_code == 200, response.text
    assert "".join(e.data for e in events if e.event == "token") == "18C and noon."
    assert events[-1].data == "stop"
    sent = up.requests[1].json()
    EXPECTED_SECOND_TURN[provider](sent, calls)


def _openai_second_turn(sent: dict[str, Any], calls: list[dict[str, Any]]) -> None:
    assert sent["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": WEATHER["parameters"],
            "description": WEATHER["description"],
        },
    }
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_t",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_w", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_t", "content": "noon"},
    ]
    assert calls[0]["id"] == "call_w"


def _anthropic_second_turn(sent: dict[str, Any], calls: list[dict[str, Any]]) -> None:
    assert sent["tools"][0] == {
        "name": "get_weather",
        "input_schema": WEATHER["parameters"],
        "description": WEATHER["description"],
    }
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "Need the weather.",
                    "signature": "EqQBCgIYAh-sig",
                },
                {
                    "type": "tool_use",
                    "id": "toolu_w",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_t", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_w", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_t", "content": "noon"},
            ],
        },
    ]
    assert [c["id"] for c in calls] == ["toolu_w", "toolu_t"]


def _ollama_second_turn(sent: dict[str, Any], calls: list[dict[str, Any]]) -> None:
    assert sent["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": WEATHER["description"],
            "parameters": WEATHER["parameters"],
        },
    }
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {}}},
            ],
            "thinking": "Need both.",
        },
        {"role": "tool", "content": "18C", "tool_name": "get_weather"},
        {"role": "tool", "content": "noon", "tool_name": "get_time"},
    ]
    assert len(calls) == 2


EXPECTED_SECOND_TURN = {
    "openai": _openai_second_turn,
    "anthropic": _anthropic_second_turn,
    "ollama": _ollama_second_turn,
}


async def test_anthropic_refuses_a_changed_thinking_block(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    """The fake really checks the signature: a tampered block is refused upstream, and the
    client gets the 400."""
    with Upstream(anthropic_checks_its_signature) as up:
        url = serve(create_app(settings_for("anthropic", up.url)))
        tampered = {
            "role": "assistant",
            "content": "",
            "reasoning": [{"type": "thinking", "text": "Changed.", "signature": "EqQBCgIYAh-sig"}],
            "tool_calls": [{"id": "toolu_w", "name": "get_weather", "arguments": "{}"}],
        }
        result = {"role": "tool", "tool_call_id": "toolu_w", "content": "18C"}
        body = {"messages": [QUESTION, tampered, result], "provider": "anthropic"}
        response, _ = await stream(client, f"{url}/chat/stream", body)
    assert response.status_code == 400


# --- images ----------------------------------------------------------------------------------


def image_message(*urls: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is this?"}]
    parts += [{"type": "image", "url": url} for url in urls]
    return {"role": "user", "content": parts}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
async def test_an_image_reaches_each_upstream_in_its_own_format(
    serve: Serve, client: httpx.AsyncClient, provider: str
) -> None:
    urls = [PNG_URL] if provider == "ollama" else [PNG_URL, HTTPS_IMAGE]
    with Upstream(reply(provider, ANSWERS[provider])) as up:
        url = serve(create_app(settings_for(provider, up.url)))
        body = {"messages": [image_message(*urls)], "provider": provider}
        response, _ = await stream(client, f"{url}/chat/stream", body)
    assert response.status_code == 200
    [sent] = up.requests[0].json()["messages"]
    assert (
        sent
        == {
            "openai": {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": PNG_URL}},
                    {"type": "image_url", "image_url": {"url": HTTPS_IMAGE}},
                ],
            },
            "anthropic": {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": HTTPS_IMAGE}},
                ],
            },
            "ollama": {"role": "user", "content": "What is this?", "images": [PNG]},
        }[provider]
    )


# --- options mapped per provider, or refused by name -----------------------------------------


@pytest.mark.parametrize(
    ("provider", "options", "expected"),
    [
        ("openai", {"reasoning": {"effort": "high"}}, {"reasoning_effort": "high"}),
        (
            "openai",
            {"tool_choice": {"name": "get_time"}, "parallel_tool_calls": False},
            {
                "tool_choice": {"type": "function", "function": {"name": "get_time"}},
                "parallel_tool_calls": False,
            },
        ),
        (
            "anthropic",
            {"reasoning": {"budget_tokens": 2048}},
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 16384},
        ),
        (
            "anthropic",
            {"reasoning": {"effort": "low"}},
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}},
        ),
        (
            "anthropic",
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
        ),
        ("anthropic", {"tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
        ("ollama", {"reasoning": {"effort": "medium"}}, {"think": "medium"}),
    ],
)
async def test_options_reach_the_upstream_in_its_terms(
    serve: Serve,
    client: httpx.AsyncClient,
    provider: str,
    options: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    with Upstream(reply(provider, ANSWERS[provider])) as up:
        url = serve(create_app(settings_for(provider, up.url)))
        body = {"messages": [QUESTION], "provider": provider, "tools": [WEATHER, TIME], **options}
        response, _ = await stream(client, f"{url}/chat/stream", body)
    assert response.status_code == 200
    sent = up.requests[0].json()
    assert {k: sent.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    ("provider", "options", "param", "words"),
    [
        ("openai", {"reasoning": {"budget_tokens": 2048}}, "reasoning.budget_tokens", "effort"),
        ("anthropic", {"reasoning": {"budget_tokens": 100}}, "reasoning.budget_tokens", "1024"),
        ("anthropic", {"reasoning": {"effort": "minimal"}}, "reasoning.effort", "low"),
        ("ollama", {"reasoning": {"budget_tokens": 2048}}, "reasoning.budget_tokens", "effort"),
        ("ollama", {"tool_choice": "required"}, "tool_choice", "cannot force"),
        (
            "ollama",
            {"messages": [image_message(HTTPS_IMAGE)]},
            "messages.0.content.1.url",
            "data: URLs only",
        ),
    ],
)
async def test_what_a_provider_cannot_take_is_a_400_naming_it(
    serve: Serve,
    client: httpx.AsyncClient,
    provider: str,
    options: dict[str, Any],
    param: str,
    words: str,
) -> None:
    with Upstream(reply(provider, ANSWERS[provider])) as up:
        url = serve(create_app(settings_for(provider, up.url)))
        body = {"messages": [QUESTION], "provider": provider, "tools": [WEATHER], **options}
        response = await client.post(f"{url}/chat/stream", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]
    assert provider in error["message"]
    assert up.requests == []  # refused before any upstream call
