"""`/v1/responses` over an OpenAI-compatible upstream: passed through to one that serves the
Responses API itself (STREAMFN_OPENAI_RESPONSES, a compatible provider's `responses`), else
translated to Chat Completions.

Real servers on loopback throughout: streamfn on uvicorn, driven by the official openai SDK;
inside it the official SDK again, calling the fake Responses API of
tests/fakes/openai_responses.py (OpenAI's wire format, and its refusals of a stateless request)
or the fake Chat Completions upstream of tests/fakes/upstream.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.providers.registry import builtin_specs
from streamfn.settings import Settings
from tests.fakes import openai_responses as r
from tests.fakes import wire as w
from tests.fakes.openai_responses import FakeResponses, Transcript, usage
from tests.fakes.upstream import Reply, Upstream

Serve = Callable[[ASGIApp], str]
Client = Callable[..., openai.OpenAI]

MODEL = f"openai/{r.MODEL}"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
QUESTION: Any = {"role": "user", "content": "Weather in Paris?"}
# Encrypted reasoning as OpenAI issues it (Fernet tokens: base64, no colon).
SEALED = "gAAAAABoyPSealedReasoningOne_0123456789abcdefABCDEF=="
SEALED_TOO = "gAAAAABoyPSealedReasoningTwo_9876543210fedcbaFEDCBA=="


def app(url: str, tmp_path: Path, **settings: Any) -> ASGIApp:
    options: dict[str, Any] = {
        "openai_api_key": w.SECRET,
        "openai_base_url": f"{url}/v1",
        "usage_records": False,
        "streams_db": tmp_path / "s.db",
    }
    return create_app(Settings(**{**options, **settings}))


@pytest.fixture
def sdk() -> Iterator[Client]:
    """`sdk(url)`: the openai SDK's client for streamfn at `url`; closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(url: str, **options: Any) -> openai.OpenAI:
        options = {"api_key": "client-key", "max_retries": 0, **options}
        clients.append(openai.OpenAI(base_url=f"{url}/v1", **options))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def passed(serve: Serve, sdk: Client, tmp_path: Path) -> Callable[..., openai.OpenAI]:
    """`passed(fake)`: a client of streamfn, whose openai provider passes Responses requests
    through to `fake`."""

    def make(fake: FakeResponses, **settings: Any) -> openai.OpenAI:
        upstream = serve(fake.app)
        return sdk(serve(app(upstream, tmp_path, openai_responses=True, **settings)))

    return make


def events_of(stream: Any) -> list[Any]:
    return list(stream)


# --- what is sent -----------------------------------------------------------------------------


def test_the_clients_body_reaches_the_upstream_as_it_came(
    passed: Callable[..., openai.OpenAI],
) -> None:
    fake = FakeResponses(Transcript().message("Mild.").completed(usage(90, 2)))
    fake.encrypted.add(SEALED)  # issued on an earlier turn
    client = passed(fake, max_tokens_cap=256)
    rid = "0f3b9c2a7d0e4d6f9a1b2c3d4e5f6a7b"  # an earlier response of streamfn's
    summary = [{"type": "summary_text", "text": "Thinking."}]
    history: list[Any] = [
        {"role": "developer", "content": "Be terse."},
        QUESTION,
        {
            "type": "reasoning",
            "id": f"rs_{rid}_0",
            "summary": summary,
            "encrypted_content": f"openai:{SEALED}",
        },
        # Reasoning OpenAI did not make: another provider's, redacted, Anthropic's, plain.
        {
            "type": "reasoning",
            "id": f"rs_{rid}_1",
            "summary": summary,
            "encrypted_content": "gemini:R2Vt",
        },
        {"type": "reasoning", "summary": [], "encrypted_content": "redacted:EmwKAhgBEgy3va3p"},
        {"type": "reasoning", "summary": [], "encrypted_content": "EqQBCgIYAhIM1gbcDa9GJwZA"},
        {"type": "reasoning", "summary": summary},
        {
            "type": "function_call",
            "id": f"fc_{rid}_2",
            "call_id": "call_w1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call_w1", "output": "18C"},
        {
            "id": f"msg_{rid}_3",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "18C.", "annotations": []}],
        },
        {"role": "user", "content": "And tomorrow?"},
    ]
    fields: dict[str, Any] = {
        "instructions": "You answer about weather.",
        "tools": [WEATHER, {"type": "web_search"}],  # hosted tools are the upstream's to run
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low", "summary": "auto"},
        "metadata": {"trace": "t-1"},
        "prompt_cache_key": "weather-bot",
        "safety_identifier": "user-42",
        "service_tier": "flex",
        "truncation": "auto",
        "text": {"verbosity": "low"},
        "include": ["message.output_text.logprobs"],
    }
    made = client.responses.create(model=MODEL, input=history, max_output_tokens=300, **fields)
    assert made.output_text == "Mild."
    assert [(q.path, q.headers["authorization"]) for q in fake.requests] == [
        (r.PATH, f"Bearer {w.SECRET}")
    ]
    sent = fake.bodies[0]
    assert sent == {
        **fields,
        "model": r.MODEL,  # resolved: the provider's own name for it
        "input": [
            history[0],
            history[1],
            {"type": "reasoning", "summary": summary, "encrypted_content": SEALED},
            {k: v for k, v in history[7].items() if k != "id"},
            history[8],
            {k: v for k, v in history[9].items() if k != "id"},
            history[10],
        ],
        "max_output_tokens": 256,  # STREAMFN_MAX_TOKENS_CAP
        "stream": True,  # though the client asked for none
        "store": False,
        "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
    }


def test_what_streamfn_cannot_translate_reaches_an_upstream_that_serves_it(
    passed: Callable[..., openai.OpenAI],
) -> None:
    """Structured output, a file, a custom tool, a field newer than streamfn: refused (the
    custom tool offered as a function) when translated (test_responses_api), sent as they came
    to a Responses upstream."""
    fake = FakeResponses(Transcript().message('{"ok": true}').completed(usage(9, 3)))
    client = passed(fake)
    schema = {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": True}
    file = {"type": "input_file", "file_id": "file-abc"}
    patch = {"type": "custom", "name": "apply_patch", "description": "Edit files"}
    made = client.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Read it"}, file]}],
        tools=[patch],
        text={"format": schema},
        extra_body={"frobnicate": 1},
    )
    assert made.output_text == '{"ok": true}'
    sent = fake.bodies[0]
    assert sent["text"] == {"format": schema}
    assert sent["tools"] == [patch]
    assert sent["input"][0]["content"][1] == file
    assert sent["frobnicate"] == 1


def test_a_custom_tools_call_from_an_upstream_that_serves_them_reaches_the_client(
    passed: Callable[..., openai.OpenAI],
) -> None:
    patch = '*** Begin Patch\n*** Add File: a.txt\n+{"input": 1}\n*** End Patch'
    fake = FakeResponses(
        Transcript()
        .custom_call("call_p", "apply_patch", patch[:12], patch[12:])
        .completed(usage(9, 30))
    )
    client = passed(fake)
    tool: Any = {"type": "custom", "name": "apply_patch", "description": "Edit files"}
    with client.responses.stream(model=MODEL, input="Add a.txt", tools=[tool]) as events:
        seen = list(events)
        final = events.get_final_response()
    assert fake.bodies[0]["tools"] == [tool]  # as it came
    [done] = [e for e in seen if e.type == "response.custom_tool_call_input.done"]
    assert done.input == patch  # type: ignore[union-attr]
    [call] = final.output
    assert call.type == "custom_tool_call"
    assert (call.call_id, call.name, call.input) == ("call_p", "apply_patch", patch)


def test_a_chain_is_sent_whole_and_stateless(
    passed: Callable[..., openai.OpenAI],
) -> None:
    first = Transcript().reasoning([["Recall."]], SEALED).message("Paris.")
    fake = FakeResponses(
        first.completed(usage(10, 2)),
        Transcript().message("Rome.").completed(usage(20, 2)),
    )
    client = passed(fake)
    # Stored by streamfn (store true), with the reasoning's encrypted content kept (include).
    include: Any = ["reasoning.encrypted_content"]
    made = client.responses.create(model=MODEL, input="Capital of France?", include=include)
    again = client.responses.create(
        model=MODEL, input="And Italy?", previous_response_id=made.id, include=include
    )
    assert again.output_text == "Rome."
    assert again.previous_response_id == made.id
    sent = fake.bodies[1]
    assert "previous_response_id" not in sent
    assert sent["store"] is False
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": "Capital of France?"},
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Recall."}],
            "encrypted_content": SEALED,
        },
        {
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Paris.", "annotations": [], "logprobs": []}
            ],
        },
        {"type": "message", "role": "user", "content": "And Italy?"},
    ]


# --- what comes back --------------------------------------------------------------------------


def test_text_streams_token_by_token_with_the_upstreams_usage(
    passed: Callable[..., openai.OpenAI],
) -> None:
    counted = usage(2100, 7, cached=2048, reasoning=3)
    fake = FakeResponses(Transcript().message("Bon", "jour", " à", " vous.").completed(counted))
    client = passed(fake)
    deltas: list[str] = []
    with client.responses.stream(model=MODEL, input="Greet me in French.") as events:
        for event in events:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = events.get_final_response()
    assert deltas == ["Bon", "jour", " à", " vous."]
    assert final.output_text == "Bonjour à vous."
    assert final.status == "completed"
    assert final.id.startswith("resp_")
    assert final.output[0].id.startswith("msg_")
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2100, 7)
    assert final.usage.input_tokens_details.cached_tokens == 2048
    assert final.usage.output_tokens_details.reasoning_tokens == 3
    assert final.usage.total_tokens == 2107


def test_a_tool_call_round_trip_with_its_reasoning(passed: Callable[..., openai.OpenAI]) -> None:
    fake = FakeResponses(
        Transcript()
        .reasoning([["**Checking the weather**\n\nThe user wants", " Paris."]], SEALED)
        .call("call_w1", "get_weather", '{"ci', 'ty": "Pa', 'ris"}')
        .completed(usage(40, 25, cached=32, reasoning=16)),
        Transcript().message("It is ", "18C.").completed(usage(70, 4)),
    )
    client = passed(fake)
    fragments: list[str] = []
    with client.responses.stream(
        model=MODEL,
        input=[QUESTION],
        tools=[WEATHER],
        store=False,
    ) as events:
        for event in events:
            if event.type == "response.function_call_arguments.delta":
                fragments.append(event.delta)
        first = events.get_final_response()
    assert fragments == ['{"ci', 'ty": "Pa', 'ris"}']
    thought, call = first.output
    assert thought.type == "reasoning"
    assert call.type == "function_call"
    assert thought.encrypted_content == f"openai:{SEALED}"
    assert (call.call_id, call.name, call.arguments) == (
        "call_w1",
        "get_weather",
        '{"city": "Paris"}',
    )
    assert first.usage is not None
    assert first.usage.output_tokens_details.reasoning_tokens == 16
    history = [
        QUESTION,
        *(o.model_dump(exclude_none=True) for o in first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C"},
    ]
    # The fake refuses ids and encrypted content it did not issue, as OpenAI does.
    second = client.responses.create(model=MODEL, input=history, tools=[WEATHER], store=False)
    assert second.output_text == "It is 18C."
    sent = fake.bodies[1]["input"]
    assert [i.get("type", "message") for i in sent] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert not any("id" in item for item in sent)
    assert sent[1]["encrypted_content"] == SEALED
    assert (sent[2]["call_id"], sent[2]["arguments"]) == ("call_w1", '{"city": "Paris"}')


def test_reasoning_summaries_stream_and_their_encrypted_content_goes_back_untagged(
    passed: Callable[..., openai.OpenAI],
) -> None:
    parts = [["**Weighing**\n\nThe user", " asks."], ["**Answering**\n\nShort", " reply."]]
    fake = FakeResponses(
        Transcript().reasoning(parts, SEALED).message("Fine.").completed(usage(30, 50)),
        Transcript()
        .reasoning([["Again."]], SEALED_TOO)
        .message("Still fine.")
        .completed(usage(60, 40)),
    )
    client = passed(fake)
    history: list[Any] = [{"role": "user", "content": "How are you?"}]
    for turn, sealed in enumerate((SEALED, SEALED_TOO)):
        summary: list[str] = []
        with client.responses.stream(
            model=MODEL, input=history, reasoning={"effort": "low", "summary": "auto"}, store=False
        ) as events:
            for event in events:
                if event.type == "response.reasoning_summary_text.delta":
                    summary.append(event.delta)
            final = events.get_final_response()
        thought = final.output[0]
        assert thought.type == "reasoning"
        assert thought.encrypted_content == f"openai:{sealed}"
        if turn == 0:
            # Two summary parts, one block: a paragraph between them.
            assert summary == [
                "**Weighing**\n\nThe user",
                " asks.",
                "\n\n",
                "**Answering**\n\nShort",
                " reply.",
            ]
            assert [s.text for s in thought.summary] == ["".join(summary)]
        history += [
            *(o.model_dump(exclude_none=True) for o in final.output),
            {"role": "user", "content": "And now?"},
        ]
    # Each turn's reasoning went back as OpenAI issued it.
    sent = [i for i in fake.bodies[1]["input"] if i.get("type") == "reasoning"]
    assert [i["encrypted_content"] for i in sent] == [SEALED]
    assert len(fake.requests) == 2


@pytest.mark.parametrize("reason", ["max_output_tokens", "content_filter"])
def test_an_incomplete_response_is_incomplete_for_the_client(
    passed: Callable[..., openai.OpenAI], reason: str
) -> None:
    cut = Transcript().message("A long", " answ", status="incomplete")
    fake = FakeResponses(cut.incomplete(reason, usage(12, 16)))
    client = passed(fake)
    events = events_of(client.responses.create(model=MODEL, input="Go on.", stream=True))
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert final.status == "incomplete"
    assert final.incomplete_details is not None
    assert final.incomplete_details.reason == reason
    assert final.output_text == "A long answ"
    assert final.usage is not None
    assert final.usage.output_tokens == 16


@pytest.mark.parametrize(
    ("end", "code"),
    [
        (
            lambda t: t.failed("server_error", "An error occurred while processing your request."),
            "server_error",
        ),
        (
            lambda t: t.error("rate_limit_exceeded", "Rate limit reached mid-stream."),
            "rate_limit_exceeded",
        ),
    ],
    ids=["response.failed", "error"],
)
def test_a_failure_mid_stream_is_the_clients_failed_response(
    passed: Callable[..., openai.OpenAI], end: Callable[[Transcript], r.Stream], code: str
) -> None:
    fake = FakeResponses(end(Transcript().message("Partial", status=None)))
    client = passed(fake)
    events = events_of(client.responses.create(model=MODEL, input="Go.", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == code
    assert [(o.type, o.status) for o in failed.output] == [("message", "incomplete")]
    assert failed.output[0].content[0].text == "Partial"


def test_a_stream_cut_before_its_end_is_a_failed_response(
    passed: Callable[..., openai.OpenAI],
) -> None:
    cut = Transcript().message("Part", status=None)
    fake = FakeResponses(r.Stream(cut.events, set(), set()))  # no response.completed
    client = passed(fake)
    events = events_of(client.responses.create(model=MODEL, input="Go.", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert "ended before it finished" in events[-2].message


def test_a_failure_before_any_output_is_an_error_status(
    passed: Callable[..., openai.OpenAI],
) -> None:
    fake = FakeResponses(Transcript().failed("server_error", "The model is unavailable."))
    client = passed(fake)
    with pytest.raises(openai.APIStatusError) as failed:
        client.responses.create(model=MODEL, input="Go.")
    assert failed.value.status_code == 502
    assert "server_error" in failed.value.message


def test_a_429_before_the_stream_is_the_clients_rate_limit_error(
    passed: Callable[..., openai.OpenAI],
) -> None:
    fake = FakeResponses(r.RATE_LIMITED)
    client = passed(fake)
    with pytest.raises(openai.RateLimitError) as limited:
        client.responses.create(model=MODEL, input="Hi", stream=True)
    assert limited.value.response.headers["retry-after"] == "2"
    assert "Rate limit reached" in limited.value.message
    assert w.SECRET not in limited.value.message
    assert len(fake.requests) == 1  # not retried: the client knows best whether to wait


def test_a_body_json_cannot_carry_upstream_is_a_client_error(
    passed: Callable[..., openai.OpenAI],
) -> None:
    """An integer past 64 bits, in a field passed through as the client sent it: a 400 that
    says so, and nothing sent upstream."""
    fake = FakeResponses(Transcript().message("Never.").completed(usage(1, 1)))
    client = passed(fake)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="Hi", extra_body={"seed_of": 2**70})
    assert "the request cannot be sent" in refused.value.message
    assert fake.requests == []


# --- which upstreams are passed through -------------------------------------------------------


@pytest.mark.parametrize("flag", [{"openai_responses": False}, {}], ids=["off", "unset"])
def test_without_the_setting_a_responses_request_is_translated_to_chat_completions(
    serve: Serve, sdk: Client, tmp_path: Path, flag: dict[str, Any]
) -> None:
    # Unset, only OpenAI's own API is taken to serve Responses: not this loopback server.
    with Upstream(Reply(body=w.openai_stream(["Hel", "lo"]))) as up:
        client = sdk(serve(app(up.url, tmp_path, **flag)))
        made = client.responses.create(model=MODEL, input="Say hello.", store=False)
    assert made.output_text == "Hello"
    assert [q.path for q in up.requests] == ["/v1/chat/completions"]
    sent = up.requests[0].json()
    assert sent["messages"] == [{"role": "user", "content": "Say hello."}]


def test_other_protocols_are_translated_even_to_a_responses_upstream(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    with Upstream(Reply(body=w.openai_stream(["Hel", "lo"]))) as up:
        client = sdk(serve(app(up.url, tmp_path, openai_responses=True)))
        made = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hello."}]
        )
    assert made.choices[0].message.content == "Hello"
    assert [q.path for q in up.requests] == ["/v1/chat/completions"]


def test_a_compatible_provider_that_serves_responses_is_passed_through(
    serve: Serve, sdk: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeResponses(
        Transcript().reasoning([["Mine."]], SEALED).message("Hi.").completed(usage(5, 2))
    )
    upstream = serve(fake.app)
    monkeypatch.setenv("LOCAL_API_KEY", w.SECRET)
    compatible = {
        "name": "local",
        "base_url": f"{upstream}/v1",
        "default_model": r.MODEL,
        "api_key_env": "LOCAL_API_KEY",
        "responses": True,
    }
    settings = Settings(
        openai_compatible=[compatible], usage_records=False, streams_db=tmp_path / "s.db"
    )
    client = sdk(serve(create_app(settings)))
    history: list[Any] = [
        {"role": "user", "content": "Hi"},
        # Reasoning from OpenAI's own API: this server did not make it.
        {"type": "reasoning", "summary": [], "encrypted_content": f"openai:{SEALED_TOO}"},
        {"type": "message", "role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Again"},
    ]
    made = client.responses.create(model=f"local/{r.MODEL}", input=history, store=False)
    assert made.output_text == "Hi."
    # Its reasoning travels tagged with its own name, which no other provider is sent.
    assert made.output[0].encrypted_content == f"local:{SEALED}"  # type: ignore[union-attr]
    assert [q.path for q in fake.requests] == [r.PATH]
    assert [i.get("type", "message") for i in fake.bodies[0]["input"]] == ["message"] * 3


async def test_openais_own_api_serves_responses_unless_told_otherwise() -> None:
    async def passes(**settings: Any) -> bool:
        (spec,) = [s for s in builtin_specs(Settings(**settings)) if s.name == "openai"]
        provider = spec.build()
        await provider.aclose()
        return provider._responses is not None  # type: ignore[attr-defined]

    key = {"openai_api_key": w.SECRET}
    assert await passes(**key)
    assert await passes(**key, openai_base_url="https://api.openai.com/v1")
    assert not await passes(
        **key, openai_base_url="https://api.openai.com/v1", openai_responses=False
    )
    assert not await passes(**key, openai_base_url="http://127.0.0.1:8000/v1")
    assert await passes(**key, openai_base_url="http://127.0.0.1:8000/v1", openai_responses=True)
