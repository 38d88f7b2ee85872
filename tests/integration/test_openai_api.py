"""The OpenAI-compatible API, driven by the official openai Python SDK (sync and async, streaming
and not, with tools and reasoning) against a real uvicorn server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import Finish, StreamError, TextDelta, Usage
from streamfn.settings import Settings
from tests.fakes import transcripts as t
from tests.fakes.upstream import Reply, Upstream
from tests.providers import Scripted, spec

Serve = Callable[[ASGIApp], str]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK_WEATHER = 'Checking.\n/call get_weather {"city": "Paris"}'


def echo_app(**settings: Any) -> ASGIApp:
    return create_app(Settings(echo_delay_ms=0, usage_records=False, **settings))


@pytest.fixture
def sync_client() -> Iterator[Callable[[str], openai.OpenAI]]:
    """`sync_client(url)`: the SDK's client for a server; closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(url: str) -> openai.OpenAI:
        clients.append(openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
async def async_client() -> AsyncIterator[Callable[[str], openai.AsyncOpenAI]]:
    clients: list[openai.AsyncOpenAI] = []

    def make(url: str) -> openai.AsyncOpenAI:
        clients.append(openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


Sync = Callable[[str], openai.OpenAI]
Async = Callable[[str], openai.AsyncOpenAI]


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_sync_stream_with_usage(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    chunks = list(
        client.chat.completions.create(
            model="echo",
            messages=user("one two three"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 3)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].model == "echo"


def test_sync_stream_without_include_usage_has_no_usage_chunk(
    serve: Serve, sync_client: Sync
) -> None:
    client = sync_client(serve(echo_app()))
    chunks = list(client.chat.completions.create(model="echo", messages=user("a b"), stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_sync_completion_not_streamed(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    completion = client.chat.completions.create(
        model="echo/echo", messages=[{"role": "system", "content": "be"}, *user("hello there")]
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 1 + 2 + 2


def test_sync_tool_call_through_the_sdks_own_stream_accumulator(
    serve: Serve, sync_client: Sync
) -> None:
    """The SDK's `.stream()` helper joins our tool_calls deltas into whole calls."""
    client = sync_client(serve(echo_app()))
    with client.chat.completions.stream(
        model="echo",
        messages=user(ASK_WEATHER),
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content == "Checking."
    [call] = message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    # The round trip: the client runs the tool and sends the result with the call.
    answer = client.chat.completions.create(
        model="echo",
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            *user(ASK_WEATHER),
            message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "18C"},
        ],
    )
    assert answer.choices[0].message.content == "get_weather returned 18C"


def test_sync_parallel_tool_calls_not_streamed(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    completion = client.chat.completions.create(
        model="echo",
        tools=[WEATHER],  # type: ignore[list-item]
        messages=user('/call get_weather {"city": "A"}\n/call get_weather {"city": "B"}'),
    )
    calls = completion.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["A", "B"]
    assert len({c.id for c in calls}) == 2
    assert completion.choices[0].message.content is None


async def test_async_stream_with_reasoning_content(serve: Serve, async_client: Async) -> None:
    client = async_client(serve(echo_app()))
    stream = await client.chat.completions.create(
        model="echo", messages=user("a b"), stream=True, reasoning_effort="low"
    )
    reasoning, text = [], []
    async for chunk in stream:
        for choice in chunk.choices:
            reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
            text.append(choice.delta.content or "")
    assert "".join(reasoning) == "The user wrote 2 words. I will repeat them exactly."
    assert "".join(text) == "a b"


async def test_async_completion_with_tools(serve: Serve, async_client: Async) -> None:
    client = async_client(serve(echo_app()))
    completion = await client.chat.completions.create(
        model="echo",
        messages=user("hi"),
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"


def test_models_lists_provider_slash_model_ids(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    ids = [m.id for m in client.models.list()]
    assert "echo/echo" in ids
    assert "ollama/llama3.2" in ids


# --- errors: the SDK raises its own typed error for each status ------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_fields_that_cannot_be_honoured_are_a_bad_request_naming_them(
    serve: Serve, extra: dict[str, Any], param: str, sync_client: Sync
) -> None:
    client = sync_client(serve(echo_app()))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="echo", messages=user("x"), extra_body=extra)
    assert caught.value.param == param  # type: ignore[attr-defined]
    assert caught.value.body["param"] == param  # type: ignore[index]


def test_ignored_fields_are_accepted(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    completion = client.chat.completions.create(
        model="echo", messages=user("x"), user="someone", seed=1, metadata={"a": "b"}, store=False
    )
    assert completion.choices[0].message.content == "x"


def test_a_malformed_body_is_a_bad_request_naming_the_field(
    serve: Serve, sync_client: Sync
) -> None:
    client = sync_client(serve(echo_app()))
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="echo",
            messages=[{"role": "wizard", "content": "x"}],  # type: ignore[list-item]
        )
    assert caught.value.body["param"] == "messages.0.role"  # type: ignore[index]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_an_unknown_model_is_a_bad_request(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app()))
    with pytest.raises(openai.BadRequestError, match="echo has no model 'gpt-9'"):
        client.chat.completions.create(model="gpt-9", messages=user("x"))


@pytest.mark.parametrize(
    ("error", "exception", "status"),
    [
        (StreamError("rate_limit", "slow down", True, 7), openai.RateLimitError, 429),
        (StreamError("upstream_unavailable", "gone", True), openai.InternalServerError, 502),
        (StreamError("overloaded", "busy", True), openai.InternalServerError, 503),
        (StreamError("timeout", "late", True), openai.InternalServerError, 504),
        (StreamError("bad_request", "no", False), openai.BadRequestError, 400),
    ],
)
@pytest.mark.parametrize("streamed", [True, False])
def test_failures_before_the_first_chunk_are_statuses_the_sdk_types(
    serve: Serve,
    error: StreamError,
    exception: type[openai.APIStatusError],
    status: int,
    streamed: bool,
    sync_client: Sync,
) -> None:
    url = serve(create_app(Settings(usage_records=False), providers=[spec(Scripted(error))]))
    with pytest.raises(exception) as caught:
        sync_client(url).chat.completions.create(model="echo", messages=user("x"), stream=streamed)
    assert caught.value.status_code == status
    assert caught.value.body["message"] == error.message  # type: ignore[index]
    assert caught.value.body["code"] == error.type  # type: ignore[index]
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "7"


def test_a_failure_after_the_first_chunk_is_raised_mid_stream(
    serve: Serve, sync_client: Sync
) -> None:
    steps = (TextDelta("partial"), StreamError("upstream_unavailable", "it broke", True))
    url = serve(create_app(Settings(usage_records=False), providers=[spec(Scripted(*steps))]))
    stream = sync_client(url).chat.completions.create(model="echo", messages=user("x"), stream=True)
    received = []
    with pytest.raises(openai.APIError, match="it broke") as caught:
        received.extend(c.choices[0].delta.content for c in stream)
    assert received == ["", "partial"]
    assert caught.value.body == {
        "message": "it broke",
        "type": "server_error",
        "param": None,
        "code": "upstream_unavailable",
    }


def test_a_failure_after_the_first_chunk_is_a_status_when_not_streamed(
    serve: Serve, sync_client: Sync
) -> None:
    steps = (TextDelta("partial"), StreamError("timeout", "too slow", True))
    url = serve(create_app(Settings(usage_records=False), providers=[spec(Scripted(*steps))]))
    with pytest.raises(openai.InternalServerError) as caught:
        sync_client(url).chat.completions.create(model="echo", messages=user("x"))
    assert caught.value.status_code == 504


# --- model routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "upstream_model"),
    [
        ("openai/gpt-test", "gpt-test"),
        ("openai", "gpt-4o-mini"),  # the provider's default model
        ("gpt-test", "gpt-test"),  # a bare model: the default provider's
        ("qwen/qwen3-8b", "qwen/qwen3-8b"),  # a prefix that names no provider is the model's
    ],
)
def test_model_routing(serve: Serve, model: str, upstream_model: str, sync_client: Sync) -> None:
    with Upstream(Reply(body=list(t.OPENAI_ANSWER))) as up:
        url = serve(
            create_app(
                Settings(openai_api_key="sk-x", openai_base_url=f"{up.url}/v1", usage_records=False)
            )
        )
        completion = sync_client(url).chat.completions.create(model=model, messages=user("x"))
    assert completion.choices[0].message.content == "18C and noon."
    assert completion.model == model
    assert up.requests[0].json()["model"] == upstream_model


def test_anthropic_thinking_round_trips_through_the_openai_api(
    serve: Serve, sync_client: Sync
) -> None:
    """Signed thinking reaches an OpenAI-API client as `reasoning_details` and goes back to
    Anthropic unchanged on the next turn."""
    with Upstream(
        Reply(body=list(t.ANTHROPIC_THINKING_TEXT_TOOL)), Reply(body=list(t.ANTHROPIC_ANSWER))
    ) as up:
        settings = Settings(anthropic_api_key="k", anthropic_base_url=up.url, usage_records=False)
        client = sync_client(serve(create_app(settings)))
        first = client.chat.completions.create(
            model="anthropic/claude-test",
            messages=user("Weather?"),
            tools=[WEATHER],  # type: ignore[list-item]
        )
        message = first.choices[0].message.model_dump(exclude_none=True)
        assert message["reasoning_details"] == [
            {"type": "reasoning.text", "text": "Need the weather.", "signature": "EqQBCgIYAh-sig"}
        ]
        call = message["tool_calls"][0]
        client.chat.completions.create(
            model="anthropic/claude-test",
            messages=[
                *user("Weather?"),
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": "18C"},
            ],
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assistant = up.requests[1].json()["messages"][1]
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "Need the weather.",
        "signature": "EqQBCgIYAh-sig",
    }


async def test_a_raw_stream_ends_with_done(serve: Serve) -> None:
    url = serve(echo_app())
    async with (
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={"model": "echo", "messages": user("hi"), "stream": True},
        ) as response,
    ):
        lines = [line async for line in response.aiter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][5:])["choices"][0]["finish_reason"] == "stop"


def test_usage_in_a_finish_chunk_counts_reasoning_and_cache(
    serve: Serve, sync_client: Sync
) -> None:
    finish = Finish("stop", Usage(10, 4, reasoning_tokens=2, cached_input_tokens=6))
    url = serve(
        create_app(
            Settings(usage_records=False), providers=[spec(Scripted(TextDelta("x"), finish))]
        )
    )
    chunks = list(
        sync_client(url).chat.completions.create(
            model="echo", messages=user("x"), stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 6
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 2


def test_a_body_over_the_limit_is_a_413_the_sdk_types(serve: Serve, sync_client: Sync) -> None:
    client = sync_client(serve(echo_app(max_body_bytes=300)))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="echo", messages=user("x" * 400))
    assert caught.value.status_code == 413
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert "STREAMFN_MAX_BODY_BYTES" in caught.value.body["message"]  # type: ignore[index]
