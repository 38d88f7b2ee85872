"""`/v1/messages` over real providers, through a real server to each provider's fake upstream:
from Anthropic the client's body goes through as it came (betas, cache_control, metadata,
fields streamfn does not know), its count_tokens too; from OpenAI and Ollama it is translated.
Tool round trips with parallel calls, driven by the anthropic Python SDK, against each."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes import transcripts as t
from tests.fakes import wire as w
from tests.fakes.upstream import Reply, Upstream
from tests.integration.test_anthropic_api import CLAUDE_CODE_BODY, WEATHER
from tests.integration.test_tool_round_trips import CALLS, answer, reply
from tests.integration.test_tools_and_reasoning import settings_for
from tests.sse_client import stream

Serve = Callable[[ASGIApp], str]
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
RESULTS = {"get_weather": "18C", "get_time": "noon"}
QUESTION = {"role": "user", "content": "Weather in Paris, and the time?"}


@pytest.fixture
def sdk() -> Iterator[Callable[[str], anthropic.Anthropic]]:
    clients: list[anthropic.Anthropic] = []

    def make(url: str) -> anthropic.Anthropic:
        clients.append(anthropic.Anthropic(base_url=url, api_key="client-key", max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def anthropic_app(url: str, **settings: Any) -> ASGIApp:
    return create_app(
        Settings(
            anthropic_api_key=w.SECRET, anthropic_base_url=url, usage_records=False, **settings
        )
    )


# --- passed through to Anthropic ----------------------------------------------------------


async def test_claude_codes_request_reaches_anthropic_as_it_came(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    body = {
        **CLAUDE_CODE_BODY,
        "model": "claude-opus-5-5",
        "some_field_from_2027": {"kept": True},
        "messages": [
            *CLAUDE_CODE_BODY["messages"],
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Mine.", "signature": "EqQBCgIYAh-sig"},
                    {"type": "thinking", "thinking": "Gemini's.", "signature": "gemini:R2Vt"},
                    {"type": "text", "text": "PONG"},
                ],
            },
            {"role": "user", "content": "again"},
        ],
    }
    with Upstream(reply("anthropic", t.ANTHROPIC_THINKING_TEXT_TOOL)) as up:
        app = anthropic_app(up.url, model_aliases={"claude-opus-*": "anthropic/claude-test"})
        response, events = await stream(
            client,
            f"{serve(app)}/v1/messages?beta=true",
            body,
            headers={
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "claude-code-20250219,context-management-2025-06-27",
                "x-api-key": "the-clients-own-key",
            },
        )
    assert response.status_code == 200, response.text
    [sent] = up.requests
    assert sent.path == "/v1/messages?beta=true"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,context-management-2025-06-27"
    # streamfn's key (which SDK 2.x sends as a Bearer token), never the client's.
    assert sent.headers["authorization"] == f"Bearer {w.SECRET}"
    assert "the-clients-own-key" not in json.dumps(sent.headers)
    upstream = sent.json()
    assert upstream["model"] == "claude-test"
    assert upstream["max_tokens"] == 16384  # 32000, lowered to STREAMFN_MAX_TOKENS_CAP
    assert upstream["stream"] is True
    for name in (
        "tools",
        "metadata",
        "thinking",
        "context_management",
        "output_config",
        "temperature",
        "some_field_from_2027",
    ):
        assert upstream[name] == body[name], name
    # The system-role message joins `system`, after its blocks (cache_control and all).
    assert upstream["system"] == [
        *CLAUDE_CODE_BODY["system"],
        {"type": "text", "text": "# Environment\nlinux"},
    ]
    assert upstream["messages"] == [
        CLAUDE_CODE_BODY["messages"][0],  # cache_control kept
        {
            "role": "assistant",
            "content": [
                # Only Anthropic's own signature goes back to Anthropic.
                {"type": "thinking", "thinking": "Mine.", "signature": "EqQBCgIYAh-sig"},
                {"type": "text", "text": "PONG"},
            ],
        },
        {"role": "user", "content": "again"},
    ]
    bodies = [json.loads(e.data) for e in events]
    starts = [b["content_block"] for b in bodies if b["type"] == "content_block_start"]
    assert [s["type"] for s in starts] == ["thinking", "text", "tool_use"]
    assert starts[2] == {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}
    deltas = [b["delta"] for b in bodies if b["type"] == "content_block_delta"]
    assert {"type": "signature_delta", "signature": "EqQBCgIYAh-sig"} in deltas
    assert [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"] == [
        '{"city": "Pa',
        'ris"}',
    ]
    assert bodies[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 30,
            "output_tokens": 25,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 8,
            "output_tokens_details": {"thinking_tokens": 9},
            "cost_usd": None,  # a fake upstream on loopback: no price is known for it
        },
    }


def test_the_sdks_count_tokens_is_anthropics_own_count(
    serve: Serve, sdk: Callable[[str], anthropic.Anthropic]
) -> None:
    counted = Reply(body=[b'{"input_tokens": 42}'], content_type="application/json")
    limited = Reply(
        status=429,
        body=[b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}'],
        headers={"retry-after": "7"},
        content_type="application/json",
    )
    with Upstream(counted, limited) as up:
        client = sdk(serve(anthropic_app(up.url)))
        result = client.beta.messages.count_tokens(
            model="claude-test",
            system=[{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
            messages=[QUESTION],
            tools=[WEATHER],  # type: ignore[list-item]
            betas=["context-management-2025-06-27"],
        )
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.count_tokens(model="claude-test", messages=[QUESTION])
    assert result.input_tokens == 42
    assert not result.model_extra  # counted, not estimated
    sent = up.requests[0]
    assert sent.path == "/v1/messages/count_tokens"  # the Python SDK adds no ?beta=true
    # As the client sent it (its SDK adds the token-counting beta itself).
    assert sent.headers["anthropic-beta"] == (
        "context-management-2025-06-27,token-counting-2024-11-01"
    )
    assert sent.json() == {
        "model": "claude-test",
        "messages": [QUESTION],
        "system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
        "tools": [WEATHER],
    }
    assert refused.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (529, "overloaded_error", anthropic.OverloadedError),
        (400, "invalid_request_error", anthropic.BadRequestError),
        (429, "rate_limit_error", anthropic.RateLimitError),
    ],
)
def test_anthropics_refusal_reaches_the_client_as_anthropics(
    serve: Serve,
    sdk: Callable[[str], anthropic.Anthropic],
    status: int,
    kind: str,
    error: type[anthropic.APIStatusError],
) -> None:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": "no: because"}})
    refusal = Reply(status=status, body=[body.encode()], content_type="application/json")
    with Upstream(refusal) as up:
        client = sdk(serve(anthropic_app(up.url)))
        with pytest.raises(error) as refused:
            client.messages.create(model="claude-test", max_tokens=9, messages=[QUESTION])
    assert refused.value.status_code == status
    assert refused.value.type == kind
    assert "because" in refused.value.message


# --- tool round trips, each upstream ------------------------------------------------------


def _second_turn_openai(sent: dict[str, Any]) -> None:
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
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]


def _second_turn_anthropic(sent: dict[str, Any]) -> None:
    # As the SDK sent it: the signed thinking block first, unchanged (the fake checks it).
    assistant, results = sent["messages"][1:]
    assert [b["type"] for b in assistant["content"]] == ["thinking", "tool_use", "tool_use"]
    assert [r["tool_use_id"] for r in results["content"]] == ["toolu_w", "toolu_t"]
    assert sent["tools"] == [WEATHER, TIME]


def _second_turn_ollama(sent: dict[str, Any]) -> None:
    assert sent["messages"][1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"name": "get_time", "arguments": {}}},
    ]
    assert sent["messages"][2:] == [
        {"role": "tool", "content": "18C", "tool_name": "get_weather"},
        {"role": "tool", "content": "noon", "tool_name": "get_time"},
    ]


SECOND_TURN = {
    "openai": _second_turn_openai,
    "anthropic": _second_turn_anthropic,
    "ollama": _second_turn_ollama,
}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_a_tool_round_trip_with_two_parallel_calls(
    serve: Serve, sdk: Callable[[str], anthropic.Anthropic], provider: str
) -> None:
    with Upstream(reply(provider, CALLS[provider]), answer(provider)) as up:
        client = sdk(serve(create_app(settings_for(provider, up.url))))
        model = f"{provider}/m"
        with client.messages.stream(
            model=model,
            max_tokens=1000,
            messages=[QUESTION],  # type: ignore[list-item]
            tools=[WEATHER, TIME],  # type: ignore[list-item]
        ) as first:
            final = first.get_final_message()
        assert final.stop_reason == "tool_use"
        calls = [b for b in final.content if b.type == "tool_use"]
        assert [(c.name, c.input) for c in calls] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {}),
        ]
        results = [
            {"type": "tool_result", "tool_use_id": c.id, "content": RESULTS[c.name]} for c in calls
        ]
        second = client.messages.create(
            model=model,
            max_tokens=1000,
            tools=[WEATHER, TIME],  # type: ignore[list-item]
            messages=[QUESTION, final.to_param(), {"role": "user", "content": results}],  # type: ignore[list-item]
        )
    assert second.content[-1].type == "text"
    assert second.content[-1].text == "18C and noon."
    assert second.stop_reason == "end_turn"
    SECOND_TURN[provider](up.requests[1].json())


async def test_openais_interleaved_parallel_calls_become_sequential_blocks(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    """Fragments of two calls interleaved on one index, told apart by id (a real server's
    quirk): each call is one block, whole, in the order the calls began."""
    with Upstream(reply("openai", t.OPENAI_EMPTY_IDS_AND_COLLISIONS)) as up:
        url = serve(create_app(settings_for("openai", up.url)))
        body = {
            "model": "openai/m",
            "max_tokens": 100,
            "stream": True,
            "messages": [QUESTION],
            "tools": [WEATHER, TIME],
        }
        response, events = await stream(client, f"{url}/v1/messages", body)
    assert response.status_code == 200
    blocks: dict[int, list[str]] = {}
    order: list[int] = []
    for event in events:
        item = json.loads(event.data)
        if item["type"] == "content_block_start":
            blocks[item["index"]] = [item["content_block"]["id"]]
        elif item["type"] == "content_block_delta":
            blocks[item["index"]].append(item["delta"]["partial_json"])
        if "index" in item:
            order.append(item["index"])
    assert order == sorted(order)  # one block at a time
    assert {i: (b[0], "".join(b[1:])) for i, b in blocks.items()} == {
        0: ("call_x", '{"city":1}'),
        1: ("call_y", '{"tz":"UTC"}'),
    }
