"""`bedrock` through every route: a real uvicorn server, the real provider (botocore's signer and
credential chain, httpx, the event-stream reader) and a fake Bedrock runtime on loopback that
checks each request's SigV4 signature (or Bedrock API key) and answers ConverseStream in its
binary event stream, byte for byte as Bedrock does (tests/fakes/bedrock.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes import bedrock as fake
from tests.fakes.upstream import Action, Recorded, Reply, Upstream
from tests.sse_client import leave_after_tokens, stream, text_of

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
QUESTION = {"role": "user", "content": "Weather in Paris, and the time?"}
RESULTS = {"get_weather": "18C", "get_time": "noon"}
THINKING = "Need the weather and the time."


@pytest.fixture
def bedrock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., tuple[Upstream, str]]]:
    """`bedrock(*replies, serve=serve, api_key=False, **settings)`: a fake Bedrock answering
    `replies` in turn, and the URL of a streamfn server pointed at it."""
    upstreams: list[Upstream] = []

    def start(
        *replies: Any, serve: Serve, api_key: bool = False, **settings: Any
    ) -> tuple[Upstream, str]:
        runtime = fake.FakeBedrock(*replies, api_key=fake.API_KEY if api_key else None)
        up = Upstream(runtime).__enter__()
        upstreams.append(up)
        fake.environment(monkeypatch, tmp_path, up.url, api_key=api_key)
        return up, serve(create_app(Settings(usage_records=False, **settings)))

    yield start
    for up in upstreams:
        up.__exit__()


def runtime(up: Upstream) -> fake.FakeBedrock:
    reply = up.replies[0]
    assert isinstance(reply, fake.FakeBedrock)
    return reply


def native(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), "provider": "bedrock", "model": fake.MODEL, **extra}


def events_of(received: list[Any]) -> list[tuple[str, Any]]:
    out = []
    for e in received:
        data = e.data if e.event in ("token", "reasoning", "done") else json.loads(e.data)
        out.append((e.event, data))
    return out


async def test_text_streams_with_usage_signed_for_bedrock(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    up, url = bedrock(fake.text_stream(["Three", " short", " words"]), serve=serve)
    body = native(
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Say three words"},
        max_tokens=50,
        temperature=0.5,
        top_p=0.9,
        stop="STOP",
    )
    response, events = await stream(client, f"{url}/chat/stream", body)
    assert response.status_code == 200
    assert text_of(events) == "Three short words"
    assert [e.event for e in events] == ["token"] * 3 + ["usage", "done"]
    usage = json.loads(events[-2].data)
    assert (usage["input_tokens"], usage["output_tokens"], usage["estimated"]) == (11, 3, False)
    assert events[-1].data == "stop"
    assert response.headers["x-streamfn-served-by"] == f"bedrock/{fake.MODEL}"
    [request] = up.requests
    # The model id is one path segment: its ':' encoded (and signed encoded twice).
    assert request.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream"
    assert runtime(up).refused == []  # the fake checked the SigV4 signature and its scope
    assert "/us-west-2/bedrock/aws4_request" in request.headers["authorization"]
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "system": [{"text": "You are terse."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hi there"}]},
            {"role": "assistant", "content": [{"text": "Hello."}]},
            {"role": "user", "content": [{"text": "Say three words"}]},
        ],
        "inferenceConfig": {
            "maxTokens": 50,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["STOP"],
        },
    }


async def test_an_arn_is_one_encoded_path_segment_and_the_api_key_a_bearer_token(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    up, url = bedrock(fake.ANSWER, serve=serve, api_key=True)
    arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.amazon.nova-pro-v1:0"
    response, events = await stream(client, f"{url}/chat/stream", native(QUESTION, model=arn))
    assert response.status_code == 200, response.text
    assert text_of(events) == "18C and noon."
    [request] = up.requests
    assert request.path.startswith("/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3A")
    assert "inference-profile%2Fus.amazon.nova-pro-v1%3A0/converse-stream" in request.path
    assert runtime(up).models == [arn]
    assert request.headers["authorization"] == f"Bearer {fake.API_KEY}"
    assert "x-amz-date" not in request.headers


# --- tool calls and reasoning, round trips ------------------------------------------------------


def claude_checks_its_thinking(request: Recorded) -> Reply:
    """Claude's rule on Bedrock as on Anthropic's API: reasoning sent back unchanged, first in
    its assistant turn, signature and redacted content included."""
    assistant = json.loads(request.body)["messages"][1]
    if assistant["content"][:2] != [
        {"reasoningContent": {"reasoningText": {"text": THINKING, "signature": fake.SIGNATURE}}},
        {"reasoningContent": {"redactedContent": fake.REDACTED}},
    ]:
        return fake.error(
            400,
            "ValidationException",
            "The model returned the following errors: messages.1.content.0: Invalid "
            "`signature` in `thinking` block",
        )
    return Reply(body=list(fake.ANSWER), content_type=fake.EVENTSTREAM)


def second_turn_sent(sent: dict[str, Any]) -> None:
    """What streamfn sent Bedrock on the turn after the tool calls, whatever the route."""
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "reasoningContent": {
                        "reasoningText": {"text": THINKING, "signature": fake.SIGNATURE}
                    }
                },
                {"reasoningContent": {"redactedContent": fake.REDACTED}},
                {"text": "Checking both."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_w0Xq2KdSRZm7v3Hc1Y8aIg",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
                {
                    "toolUse": {
                        "toolUseId": "tooluse_t9Lm4NbVQyW2pXe7Rk3sAg",
                        "name": "get_time",
                        "input": {},
                    }
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tooluse_w0Xq2KdSRZm7v3Hc1Y8aIg",
                        "content": [{"text": "18C"}],
                    }
                },
                {
                    "toolResult": {
                        "toolUseId": "tooluse_t9Lm4NbVQyW2pXe7Rk3sAg",
                        "content": [{"text": "noon"}],
                    }
                },
            ],
        },
    ]
    assert sent["toolConfig"]["tools"][0] == {
        "toolSpec": {
            "name": "get_weather",
            "inputSchema": {"json": WEATHER["parameters"]},
            "description": WEATHER["description"],
        }
    }


async def test_reasoning_and_parallel_calls_round_trip_through_the_native_route(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    up, url = bedrock(fake.THINKING_TWO_TOOLS, claude_checks_its_thinking, serve=serve)
    first = native(QUESTION, tools=[WEATHER, TIME])
    response, received = await stream(client, f"{url}/chat/stream", first)
    assert response.status_code == 200
    w, t = "tooluse_w0Xq2KdSRZm7v3Hc1Y8aIg", "tooluse_t9Lm4NbVQyW2pXe7Rk3sAg"
    assert events_of(received) == [
        ("reasoning", "Need the weather"),
        ("reasoning", " and the time."),
        ("reasoning_done", {"type": "thinking", "text": THINKING, "signature": fake.SIGNATURE}),
        ("reasoning_done", {"type": "redacted_thinking", "data": fake.REDACTED}),
        ("token", "Checking both."),
        ("tool_call_start", {"id": w, "name": "get_weather"}),
        ("tool_call_delta", {"id": w, "arguments": '{"city": "Pa'}),
        ("tool_call_delta", {"id": w, "arguments": 'ris"}'}),
        ("tool_call", {"id": w, "name": "get_weather", "arguments": '{"city": "Paris"}'}),
        ("tool_call_start", {"id": t, "name": "get_time"}),
        ("tool_call", {"id": t, "name": "get_time", "arguments": "{}"}),
        (
            "usage",
            {
                "input_tokens": 150,  # 30 uncached, 100 read from the cache, 20 written to it
                "output_tokens": 12,
                "estimated": False,
                "reasoning_tokens": None,
                "cached_input_tokens": 100,
                "cache_creation_input_tokens": 20,
                # AWS's prices of a US profile of Claude Sonnet 4.5 (genai-prices): $3.30 a
                # million fresh input tokens, $0.33 read, $4.125 written, $16.50 output.
                "cost_usd": pytest.approx((30 * 3.3 + 100 * 0.33 + 20 * 4.125 + 12 * 16.5) / 1e6),
                "provider": "bedrock",
                "model": fake.MODEL,
            },
        ),
        ("done", "tool_calls"),
    ]
    calls = [data for event, data in events_of(received) if event == "tool_call"]
    reasoning = [data for event, data in events_of(received) if event == "reasoning_done"]
    turn = {
        "role": "assistant",
        "content": "Checking both.",
        "tool_calls": calls,
        "reasoning": reasoning,
    }
    results = [
        {"role": "tool", "tool_call_id": c["id"], "content": RESULTS[c["name"]]} for c in calls
    ]
    second = {**first, "messages": [QUESTION, turn, *results]}
    response, received = await stream(client, f"{url}/chat/stream", second)
    assert response.status_code == 200, response.text
    assert text_of(received) == "18C and noon."
    second_turn_sent(up.requests[1].json())

    # Changed reasoning is refused by the model, and the 400 names our field for Bedrock's.
    tampered = {**turn, "reasoning": [{**reasoning[0], "text": "Changed."}, reasoning[1]]}
    response, _ = await stream(
        client, f"{url}/chat/stream", {**first, "messages": [QUESTION, tampered, *results]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "bad_request"
    assert "request field messages.1" in error["message"]
    assert "Invalid `signature`" in error["message"]


def openai_tool(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": tool}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_the_round_trip_through_the_openai_api_with_the_official_sdk(
    serve: Serve,
    bedrock: Callable[..., tuple[Upstream, str]],
    streamed: bool,
) -> None:
    up, url = bedrock(fake.THINKING_TWO_TOOLS, claude_checks_its_thinking, serve=serve)
    model = f"bedrock/{fake.MODEL}"
    tools = [openai_tool(WEATHER), openai_tool(TIME)]
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as sdk:
        if streamed:
            chunks = await sdk.chat.completions.create(
                model=model, messages=[QUESTION], tools=tools, stream=True
            )
            text, calls, details, finish = "", {}, [], None
            async for chunk in chunks:
                delta = chunk.choices[0].delta
                text += delta.content or ""
                details += (delta.model_extra or {}).get("reasoning_details") or []
                for fragment in delta.tool_calls or ():
                    call = calls.setdefault(fragment.index, {"arguments": ""})
                    call["id"] = fragment.id or call.get("id")
                    if fragment.function and fragment.function.name:
                        call["name"] = fragment.function.name
                    if fragment.function and fragment.function.arguments:
                        call["arguments"] += fragment.function.arguments
                finish = chunk.choices[0].finish_reason or finish
            assert finish == "tool_calls"
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text,
                "reasoning_details": details,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls.values()
                ],
            }
        else:
            completion = await sdk.chat.completions.create(
                model=model, messages=[QUESTION], tools=tools
            )
            assert completion.choices[0].finish_reason == "tool_calls"
            message = completion.choices[0].message.model_dump(exclude_none=True)
        assert message["reasoning_details"] == [
            {"type": "reasoning.text", "text": THINKING, "signature": fake.SIGNATURE},
            {"type": "reasoning.encrypted", "data": fake.REDACTED},
        ]
        names = {c["id"]: c["function"]["name"] for c in message["tool_calls"]}
        answer = await sdk.chat.completions.create(
            model=model,
            messages=[
                QUESTION,
                message,
                *(
                    {"role": "tool", "tool_call_id": id, "content": RESULTS[name]}
                    for id, name in names.items()
                ),
            ],
            tools=tools,
        )
    assert answer.choices[0].message.content == "18C and noon."
    second_turn_sent(up.requests[1].json())


async def test_the_round_trip_through_the_ai_sdk_route(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    up, url = bedrock(fake.THINKING_TWO_TOOLS, claude_checks_its_thinking, serve=serve)
    question = {
        "id": "u1",
        "role": "user",
        "parts": [{"type": "text", "text": QUESTION["content"]}],
    }
    first = {
        "id": "chat-1",
        "messages": [question],
        "provider": "bedrock",
        "model": fake.MODEL,
        "tools": [WEATHER, TIME],
    }
    response, received = await stream(client, f"{url}/api/chat", first)
    assert response.status_code == 200
    parts = [json.loads(e.data) for e in received if e.data != "[DONE]"]
    # What useChat keeps of the answer: reasoning parts with their provider metadata, the text,
    # and the tool calls, which the client runs and sends back with their outputs.
    kept: list[dict[str, Any]] = []
    texts: dict[str, str] = {}
    for part in parts:
        if part["type"] in ("reasoning-delta", "text-delta"):
            texts[part["id"]] = texts.get(part["id"], "") + part["delta"]
        elif part["type"] == "reasoning-end":
            kept.append(
                {
                    "type": "reasoning",
                    "text": texts.get(part["id"], ""),
                    "providerMetadata": part.get("providerMetadata"),
                }
            )
        elif part["type"] == "text-end":
            kept.append({"type": "text", "text": texts[part["id"]]})
        elif part["type"] == "tool-input-available":
            kept.append(
                {
                    "type": f"tool-{part['toolName']}",
                    "toolCallId": part["toolCallId"],
                    "state": "output-available",
                    "input": part["input"],
                    "output": RESULTS[part["toolName"]],
                }
            )
    assert [p["type"] for p in kept] == [
        "reasoning",
        "reasoning",
        "text",
        "tool-get_weather",
        "tool-get_time",
    ]
    [finish] = [p for p in parts if p["type"] == "finish"]
    assert finish["finishReason"] == "tool-calls"
    assistant = {"id": "a1", "role": "assistant", "parts": kept}
    response, received = await stream(
        client, f"{url}/api/chat", {**first, "messages": [question, assistant]}
    )
    assert response.status_code == 200, response.text
    parts = [json.loads(e.data) for e in received if e.data != "[DONE]"]
    assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == "18C and noon."
    second_turn_sent(up.requests[1].json())


# --- options, and what Converse cannot take ----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"reasoning": {"budget_tokens": 2048}},
            {
                "additionalModelRequestFields": {
                    "thinking": {"type": "enabled", "budget_tokens": 2048}
                }
            },
        ),
        (
            {"reasoning": {"effort": "max"}},
            {
                "outputConfig": {"effort": "max"},
                "additionalModelRequestFields": {"thinking": {"type": "adaptive"}},
            },
        ),
        (
            {"tool_choice": "required"},
            {
                "toolConfig": {
                    "tools": [
                        {
                            "toolSpec": {
                                "name": "get_time",
                                "inputSchema": {"json": TIME["parameters"]},
                            }
                        }
                    ],
                    "toolChoice": {"any": {}},
                }
            },
        ),
        (
            {"tool_choice": {"name": "get_time"}},
            {
                "toolConfig": {
                    "tools": [
                        {
                            "toolSpec": {
                                "name": "get_time",
                                "inputSchema": {"json": TIME["parameters"]},
                            }
                        }
                    ],
                    "toolChoice": {"tool": {"name": "get_time"}},
                }
            },
        ),
        ({"tool_choice": "none"}, {"toolConfig": None}),
    ],
)
async def test_options_reach_bedrock_in_converse_terms(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    options: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    up, url = bedrock(fake.ANSWER, serve=serve)
    response, _ = await stream(
        client, f"{url}/chat/stream", native(QUESTION, tools=[TIME], **options)
    )
    assert response.status_code == 200, response.text
    sent = up.requests[0].json()
    assert {k: sent.get(k) for k in expected} == expected


PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)


async def test_an_image_goes_as_bytes(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    up, url = bedrock(fake.ANSWER, serve=serve)
    image = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "url": f"data:image/png;base64,{PNG}"},
        ],
    }
    response, _ = await stream(client, f"{url}/chat/stream", native(image))
    assert response.status_code == 200
    assert up.requests[0].json()["messages"][0]["content"] == [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": PNG}}},
    ]


@pytest.mark.parametrize(
    ("options", "param", "words"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "url": "https://x.test/a.jpg"}]}
                ]
            },
            "messages.0.content.0.url",
            "data: URLs only",
        ),
        ({"reasoning": {"effort": "minimal"}}, "reasoning.effort", "xhigh"),
        ({"reasoning": {"budget_tokens": 512}}, "reasoning.budget_tokens", "1024"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls", "parallel"),
        (
            {
                "tool_choice": "none",
                "messages": [
                    QUESTION,
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"id": "c1", "name": "get_time", "arguments": "{}"}],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "noon"},
                ],
            },
            "tool_choice",
            "tool_choice none",
        ),
    ],
)
async def test_what_converse_cannot_take_is_a_400_naming_it_before_bedrock_is_called(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    options: dict[str, Any],
    param: str,
    words: str,
) -> None:
    up, url = bedrock(fake.ANSWER, serve=serve)
    messages = options.pop("messages", [QUESTION])
    response = await client.post(
        f"{url}/chat/stream", json=native(*messages, tools=[TIME], **options)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], "bedrock" in error["message"]) == (param, True)
    assert words in error["message"]
    assert up.requests == []


# --- failures before the first token: statuses ---------------------------------------------------

FAILURES = {
    "throttled": (
        fake.error(
            429, "ThrottlingException", "Too many requests, please wait before trying again."
        ),
        429,
        "rate_limit",
        True,
        "ThrottlingException: Too many requests",
    ),
    "unavailable": (
        fake.error(
            503, "ServiceUnavailableException", "Bedrock is unable to process your request."
        ),
        503,
        "overloaded",
        True,
        "ServiceUnavailableException",
    ),
    "validation": (
        fake.error(
            400,
            "ValidationException",
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to "
            "satisfy constraint: Member must have value greater than or equal to 1",
        ),
        400,
        "bad_request",
        False,
        "ValidationException (request field max_tokens)",
    ),
    "no permission": (
        fake.error(
            403,
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/streamfn-StreamFunctionRole-X/streamfn "
            "is not authorized to perform: bedrock:InvokeModelWithResponseStream on resource: "
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0 "
            "because no identity-based policy allows the bedrock:InvokeModelWithResponseStream "
            "action",
            key="Message",
        ),
        502,
        "auth",
        False,
        "BedrockModelArns",
    ),
    "no model access": (
        fake.error(
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        502,
        "auth",
        False,
        "Model access",
    ),
    "model not ready": (
        fake.error(
            429,
            "ModelNotReadyException",
            "Model is not ready to serve inference requests. The AWS SDK will automatically "
            "retry the operation.",
        ),
        429,
        "rate_limit",
        True,
        "ModelNotReadyException",
    ),
    "not found": (
        fake.error(
            404,
            "ResourceNotFoundException",
            "Could not resolve the foundation model from the provided model identifier.",
        ),
        400,
        "bad_request",
        False,
        f"model '{fake.MODEL}' in us-west-2",
    ),
    "model error": (
        fake.error(424, "ModelErrorException", "The model encountered an error."),
        502,
        "upstream_unavailable",
        True,
        "ModelErrorException",
    ),
    "model timeout": (
        fake.error(408, "ModelTimeoutException", "Model has timed out in processing the request."),
        504,
        "timeout",
        True,
        "ModelTimeoutException",
    ),
    "exception before a token": (
        [
            fake.message_start(),
            fake.exception("throttlingException", "Too many tokens per minute."),
        ],
        429,
        "rate_limit",
        True,
        "throttlingException",
    ),
    "not an error body": (
        Reply(status=500, body=[b"<html>Internal</html>"], content_type="text/html"),
        502,
        "upstream_unavailable",
        True,
        "<html>Internal</html>",
    ),
}


@pytest.mark.parametrize("failure", FAILURES)
async def test_a_failure_before_the_first_token_is_a_status(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    failure: str,
) -> None:
    reply, status, kind, retryable, words = FAILURES[failure]
    up, url = bedrock(reply, serve=serve)
    response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["type"], error["retryable"]) == (kind, retryable)
    assert words in error["message"]
    assert len(up.requests) == 1, "no retry unless STREAMFN_UPSTREAM_RETRIES asks for it"
    if status == 429:
        assert response.headers["retry-after"] == "1"


async def test_throttling_is_retried_when_retries_are_on(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    throttled = fake.error(429, "ThrottlingException", "Too many requests.")
    up, url = bedrock(throttled, fake.ANSWER, serve=serve, upstream_retries=1)
    response, events = await stream(client, f"{url}/chat/stream", native(QUESTION))
    assert response.status_code == 200
    assert text_of(events) == "18C and noon."
    assert len(up.requests) == 2


# --- failures after it: error events -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("throttlingException", "rate_limit"),
        ("modelStreamErrorException", "upstream_unavailable"),
        ("internalServerException", "upstream_unavailable"),
        ("serviceUnavailableException", "overloaded"),
        ("validationException", "bad_request"),
    ],
)
async def test_an_exception_in_the_stream_is_an_error_event(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    name: str,
    kind: str,
) -> None:
    transcript = [
        fake.message_start(),
        fake.text("Hel"),
        fake.text("lo"),
        fake.exception(name, "It broke."),
    ]
    _, url = bedrock(transcript, serve=serve)
    response, events = await stream(client, f"{url}/chat/stream", native(QUESTION))
    assert response.status_code == 200
    assert [e.event for e in events] == ["token", "token", "error"]
    error = json.loads(events[-1].data)
    assert error["type"] == kind
    assert f"{name} mid-stream: It broke." in error["message"]


@pytest.mark.parametrize(
    ("tail", "kind", "words"),
    [
        ([Action.RESET], "upstream_unavailable", "broke"),
        ([Action.CLOSE], "upstream_unavailable", "broke"),
        ([Action.END], "upstream_error", "ended before it finished"),
        ([fake.text("x")[:-3], Action.END], "upstream_error", "ended before it finished"),
        ([fake.text("x")[:-1] + b"\x00"], "upstream_error", "CRC"),
        (
            [fake.message_stop("malformed_tool_use"), fake.metadata()],
            "upstream_error",
            "malformed_tool_use",
        ),
    ],
    ids=["reset", "closed", "no messageStop", "half a message", "bad CRC", "malformed"],
)
async def test_a_stream_cut_or_broken_is_an_error_not_a_clean_end(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    tail: list[Any],
    kind: str,
    words: str,
) -> None:
    _, url = bedrock(
        Reply(
            body=[fake.message_start(), fake.text("Hel"), 0.1, *tail], content_type=fake.EVENTSTREAM
        ),
        serve=serve,
    )
    response, events = await stream(client, f"{url}/chat/stream", native(QUESTION))
    assert response.status_code == 200
    assert [e.event for e in events] == ["token", "error"]
    error = json.loads(events[-1].data)
    assert error["type"] == kind
    assert words in error["message"]


async def test_without_metadata_the_usage_is_estimated(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    transcript = [
        fake.message_start(),
        fake.text("Hello there"),
        fake.block_stop(0),
        fake.message_stop("max_tokens"),
    ]
    _, url = bedrock(transcript, serve=serve)
    _, events = await stream(client, f"{url}/chat/stream", native(QUESTION))
    assert events[-1].data == "length"
    assert json.loads(events[-2].data)["estimated"] is True


async def test_a_client_that_leaves_cancels_the_bedrock_request(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    words = [x for i in range(100) for x in (fake.text(f" w{i}"), 0.05)]
    body = [fake.message_start(), *words, fake.block_stop(0), fake.message_stop(), fake.metadata()]
    up, url = bedrock(
        Reply(body=body, content_type=fake.EVENTSTREAM), serve=serve, resume_grace_s=0
    )
    left_at = await leave_after_tokens(client, f"{url}/chat/stream", native(QUESTION))
    assert await asyncio.to_thread(up.client_closed.wait, 1.0), "the Bedrock request left open"
    assert up.client_closed_at is not None
    assert up.client_closed_at - left_at < 1.0


async def test_the_benchmark_script_streams_every_token(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    _, url = bedrock(serve=serve)
    response, events = await stream(
        client, f"{url}/chat/stream", native(QUESTION, model="fast-1000")
    )
    assert response.status_code == 200
    assert text_of(events) == "".join(f"t{i} " for i in range(1000))
    assert json.loads(events[-2].data)["output_tokens"] == 1000


@pytest.fixture
def bench_fake() -> Iterator[str]:
    """The benchmark's fake Bedrock (`python -m tests.fakes.bedrock PORT`), in a thread."""
    loop = asyncio.new_event_loop()
    ports: list[int] = []
    started = threading.Event()
    main = loop.create_task(fake.serve(0, lambda port: (ports.append(port), started.set())))

    def run() -> None:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        if rest:
            loop.run_until_complete(asyncio.wait(rest))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{ports[0]}"
    loop.call_soon_threadsafe(main.cancel)
    thread.join(5)
    assert loop.is_closed()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("fast-300", "".join(f"t{i} " for i in range(300))),
        ("pace-200-20", "".join(f"t{i} " for i in range(20))),
        ("big-3-40", "".join(f"t{i} ".ljust(40, "x") for i in range(3))),
    ],
)
async def test_the_benchmark_fake_serves_its_scripts_exactly(
    serve: Serve,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bench_fake: str,
    script: str,
    expected: str,
) -> None:
    fake.environment(monkeypatch, tmp_path, bench_fake)
    url = serve(create_app(Settings(usage_records=False)))
    response, events = await stream(client, f"{url}/chat/stream", native(QUESTION, model=script))
    assert response.status_code == 200
    assert text_of(events) == expected
    assert events[-1].data == "stop"


async def test_the_benchmark_fakes_idle_script_goes_quiet_until_the_client_leaves(
    serve: Serve,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bench_fake: str,
) -> None:
    fake.environment(monkeypatch, tmp_path, bench_fake)
    url = serve(create_app(Settings(usage_records=False, resume=False)))
    seen: list[str] = []
    async with client.stream(
        "POST", f"{url}/chat/stream", json=native(QUESTION, model="idle-1")
    ) as r:
        lines = r.aiter_lines()
        while "data: t0 " not in seen or seen[-1] != "":  # the first token's event, whole
            seen.append(await anext(lines))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await anext(lines)  # nothing more: the stream is idle, not ended


# --- listed everywhere; refused clearly when it cannot be called --------------------------------


async def test_listed_in_providers_and_models(
    serve: Serve, client: httpx.AsyncClient, bedrock: Callable[..., tuple[Upstream, str]]
) -> None:
    _, url = bedrock(serve=serve, bedrock_model="amazon.nova-lite-v1:0")
    providers = (await client.get(f"{url}/providers")).json()["providers"]
    assert {
        "name": "bedrock",
        "default_model": "amazon.nova-lite-v1:0",
        "reachable": True,
    } in providers
    models = (await client.get(f"{url}/v1/models")).json()["data"]
    assert "bedrock/amazon.nova-lite-v1:0" in [m["id"] for m in models]


async def test_unconfigured_it_is_unknown_with_what_turns_it_on(
    serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.environment(monkeypatch, tmp_path)
    for name in ("AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    url = serve(create_app(Settings(usage_records=False)))
    providers = (await client.get(f"{url}/providers")).json()["providers"]
    assert "bedrock" not in [p["name"] for p in providers]
    response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "bedrock is not configured: set AWS_REGION and AWS credentials" in message


async def test_without_credentials_the_refusal_says_what_to_set(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up, _ = bedrock(serve=serve)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    # Named, so offered even though no credentials can be seen: then botocore finds none.
    url = serve(create_app(Settings(bedrock_model="amazon.nova-lite-v1:0")))
    response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert response.status_code == 502
    assert "no AWS credentials found" in response.json()["error"]["message"]
    assert up.requests == []


async def test_credentials_that_cannot_be_loaded_are_a_502_saying_so(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    up, _ = bedrock(serve=serve)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    failing = f"{sys.executable} -c \"import sys; sys.exit('SSO session expired')\""
    (tmp_path / "aws-config").write_text(f"[default]\ncredential_process = {failing}\n")
    url = serve(create_app(Settings(bedrock_model="amazon.nova-lite-v1:0")))
    response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    assert response.status_code == 502
    error = response.json()["error"]
    assert (error["type"], error["retryable"]) == ("upstream_unavailable", True)
    assert "AWS credentials could not be loaded" in error["message"]
    assert "SSO session expired" in error["message"]
    assert up.requests == []


# --- no credential, signature or session token anywhere ------------------------------------------


def scan(texts: list[str], secrets: list[str]) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked: {text[:300]}"
        assert "Canonical String" not in text


@pytest.mark.parametrize(
    "case", ["success", "wrong secret", "wrong region", "wrong api key", "in-band error"]
)
async def test_no_secret_reaches_a_client_or_a_log_line(
    serve: Serve,
    client: httpx.AsyncClient,
    bedrock: Callable[..., tuple[Upstream, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore's signer logs its canonical request at DEBUG
    said = f"Echoing {fake.SECRET_KEY} and {fake.SESSION_TOKEN}"  # what it signs with
    transcript = [fake.message_start(), fake.text("a"), fake.exception("validationException", said)]
    reply = transcript if case == "in-band error" else fake.ANSWER
    settings: dict[str, Any] = {"aws_region": "eu-west-1"} if case == "wrong region" else {}
    up, url = bedrock(reply, serve=serve, api_key=case == "wrong api key", **settings)
    if case == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        url = serve(create_app(Settings(usage_records=False)))
    if case == "wrong api key":
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "ABSK-wrong-SECRET-key")
        url = serve(create_app(Settings(usage_records=False)))
    response = await client.post(f"{url}/chat/stream", json=native(QUESTION))
    await response.aread()
    if case in ("wrong secret", "wrong region", "wrong api key"):
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "auth"
        assert runtime(up).refused, "the fake refused the request"
    signatures = [
        r.headers["authorization"].rsplit("Signature=", 1)[-1]
        for r in up.requests
        if "Signature=" in r.headers.get("authorization", "")
    ]
    received = "".join(f"{k}: {v}\n" for k, v in response.headers.items()) + response.text
    logs = [r.getMessage() + (r.exc_text or "") + str(r.__dict__) for r in caplog.records]
    secrets = [
        fake.SECRET_KEY,
        fake.SESSION_TOKEN,
        fake.API_KEY,
        "ABSK-wrong-SECRET-key",
        *signatures,
    ]
    scan([received, *logs], secrets)
    if case == "wrong secret":
        # AWS's own message quotes the canonical request, session token and all: cut.
        assert "signature we calculated does not match" in response.json()["error"]["message"]
