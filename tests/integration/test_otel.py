"""OpenTelemetry export, through a real server and an OTLP/HTTP receiver on loopback that
decodes the protobuf the exporter sends (tests/fakes/otlp.py): each request's HTTP server span
continuing the caller's traceparent, on every route; its `chat {model}` span in the GenAI
conventions; spans for retries and fallbacks; the GenAI metrics; the standard OTEL_* variables;
and nothing at all, not even an import, when no endpoint is set."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import Finish, StreamChunk, StreamError, TextDelta, Usage
from streamfn.observability import flush, genai
from streamfn.providers import ProviderSpec
from streamfn.providers.echo import EchoProvider
from streamfn.request import ChatRequest
from streamfn.settings import Settings
from tests.fakes.otlp import Receiver, Span
from tests.providers import Scripted, spec
from tests.sse_client import stream, user

Serve = Callable[[ASGIApp], str]
ROOT = Path(__file__).parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver for the test's servers to export to: a test names it before `serve`, so
    that it outlives them and takes their last export as they shut down."""
    # Batches go out within 50 ms, not the SDK's 5 s, so that tests need not wait.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    for name in [n for n in os.environ if n.startswith("OTEL_") and n != "OTEL_BSP_SCHEDULE_DELAY"]:
        monkeypatch.delenv(name)
    with Receiver() as r:
        yield r


def app_for(
    receiver: Receiver, providers: list[ProviderSpec] | None = None, **settings: Any
) -> FastAPI:
    values: dict[str, Any] = {
        "otel_endpoint": receiver.url,
        "usage_records": False,
        "echo_delay_ms": 0,
        **settings,
    }
    return create_app(Settings(**values), providers=providers)


class Flaky:
    """Fails its first `failures` streams before any token (retryably), then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:  # noqa: ARG002
        self.calls += 1
        if self.calls <= self.failures:
            yield StreamError("overloaded", "busy", retryable=True)
            return
        yield TextDelta("fine now")
        yield Finish("stop", Usage(5, 2))

    async def aclose(self) -> None:
        pass


def chat_span(receiver: Receiver, trace_id: str | None = None) -> Span:
    def found(r: Receiver) -> Span | None:
        spans = [s for s in r.spans_named("chat ") if trace_id in (None, s.trace_id)]
        return spans[-1] if spans else None

    return receiver.wait_for(found)


def server_span(receiver: Receiver, span_id: str) -> Span:
    return receiver.wait_for(lambda r: next((s for s in r.spans if s.span_id == span_id), None))


ROUTES = [
    ("/chat/stream", {"messages": [{"role": "user", "content": "hello there friend"}]}),
    (
        "/v1/chat/completions",
        {"model": "echo/echo", "stream": True, **user("hello there friend")},
    ),
    ("/v1/chat/completions", {"model": "echo/echo", **user("hello there friend")}),
    (
        "/v1/messages",
        {"model": "echo", "max_tokens": 100, "stream": True, **user("hello there friend")},
    ),
    (
        "/api/chat",
        {
            "id": "chat-7",
            "messages": [
                {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hello there"}]}
            ],
        },
    ),
    ("/v1/responses", {"model": "echo", "stream": True, "input": "hello there friend"}),
]


@pytest.mark.parametrize(("path", "body"), ROUTES)
async def test_every_route_continues_the_traceparent_into_a_chat_span(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    url = serve(app_for(receiver))
    response = await client.post(f"{url}{path}", json=body, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200, response.text
    chat = chat_span(receiver, TRACE_ID)
    # The HTTP server span (FastAPI's) is the child of the caller's span; the chat span, its.
    server = server_span(receiver, chat.parent_span_id)
    assert (server.kind, server.name) == ("SERVER", f"POST {path}")
    assert (server.trace_id, server.parent_span_id) == (TRACE_ID, PARENT_ID)
    assert server.attributes["http.response.status_code"] == 200
    assert chat.name == "chat echo"
    assert chat.kind == "INTERNAL"  # echo is a model in this process; the others are CLIENT
    attributes = chat.attributes
    # The model as asked for, without the provider/ prefix of the /v1 routes.
    assert attributes["gen_ai.request.model"] == "echo"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "echo"
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert attributes["streamfn.request_id"] == response.headers["x-request-id"]
    assert attributes["streamfn.streamed"] is body.get(
        "stream", path in ("/chat/stream", "/api/chat")
    )
    assert "gen_ai.response.model" not in attributes  # no provider says what answered
    assert "gen_ai.input.messages" not in attributes  # content only with STREAMFN_LOG_CONTENT
    assert not chat.error
    assert server.start_ns <= chat.start_ns < chat.end_ns
    if path == "/api/chat":
        assert attributes["gen_ai.conversation.id"] == "chat-7"
    assert chat.schema_url == genai.SCHEMA_URL
    assert chat.resource["service.name"] == "streamfn"
    assert chat.resource["service.instance.id"]


async def test_without_a_traceparent_each_request_starts_its_own_trace(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(app_for(receiver))
    for _ in range(2):
        assert (await client.post(f"{url}/chat/stream", json=user("a b"))).status_code == 200
    receiver.wait_for(lambda r: r.spans_named("chat ")[1:])
    chats = receiver.spans_named("chat ")
    assert len({s.trace_id for s in chats}) == 2
    for chat in chats:
        assert server_span(receiver, chat.parent_span_id).parent_span_id == ""


async def test_health_checks_are_not_traced(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    app = app_for(receiver)
    url = serve(app)
    assert (await client.get(f"{url}/healthz")).status_code == 200
    assert (await client.get(f"{url}/v1/models")).status_code == 200
    receiver.wait_for(lambda r: r.spans_named("GET /v1/models"))
    assert not receiver.spans_named("GET /healthz")


async def test_an_unsampled_traceparent_records_no_spans_and_metrics_still(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    app = app_for(receiver)
    url = serve(app)
    unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
    response = await client.post(
        f"{url}/chat/stream", json=user("a b"), headers={"traceparent": unsampled}
    )
    assert response.status_code == 200
    points = await flushed_points(app, receiver, "gen_ai.server.request.duration")
    assert sum(p.count for p in points) == 1
    assert receiver.spans == []


async def test_a_fallback_and_the_failed_attempt_before_it_are_spans(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    busy = Scripted(StreamError("overloaded", "busy", retryable=True))
    providers = [spec(busy, name="flaky", default_model="m1"), spec(EchoProvider(0))]
    app = app_for(receiver, providers, default_provider="flaky", fallbacks={"flaky": ["echo/echo"]})
    url = serve(app)
    response, _ = await stream(client, f"{url}/chat/stream", user("hello there"))
    assert response.headers["x-streamfn-served-by"] == "echo/echo"
    chat = chat_span(receiver)
    # The request that produced the answer was made to the fallback: the span is about it.
    assert chat.name == "chat echo"
    assert chat.attributes["gen_ai.provider.name"] == "echo"
    assert chat.attributes["streamfn.requested"] == "flaky/m1"
    assert chat.attributes["streamfn.attempts"] == 2
    attempts = receiver.wait_for(lambda r: attempt_spans(r, chat)[1:] and attempt_spans(r, chat))
    first, fallback = sorted(attempts, key=lambda s: s.start_ns)
    assert first.name == "attempt flaky/m1"
    assert first.error
    assert first.attributes["error.type"] == "overloaded"
    assert fallback.name == "fallback echo/echo"
    assert not fallback.error
    assert fallback.attributes["streamfn.attempt.candidate"] == 1
    assert first.end_ns <= fallback.start_ns
    assert fallback.end_ns == chat.end_ns  # the one that answered lasts as long as the stream
    assert not chat.error


def attempt_spans(receiver: Receiver, chat: Span) -> list[Span]:
    return [s for s in receiver.spans if s.parent_span_id == chat.span_id]


async def test_a_retry_is_a_span_after_the_attempt_that_failed(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    flaky = Flaky(failures=1)
    app = app_for(
        receiver,
        [spec(flaky, name="flaky", default_model="m1")],
        default_provider="flaky",
        upstream_retries=1,
    )
    url = serve(app)
    response = await client.post(f"{url}/chat/stream", json=user("hi"))
    assert response.status_code == 200
    chat = chat_span(receiver)
    assert (chat.kind, chat.attributes["gen_ai.provider.name"]) == ("CLIENT", "flaky")
    attempts = receiver.wait_for(lambda r: attempt_spans(r, chat)[1:] and attempt_spans(r, chat))
    first, retry = sorted(attempts, key=lambda s: s.start_ns)
    assert (first.name, retry.name) == ("attempt flaky/m1", "retry flaky/m1")
    assert first.attributes["streamfn.attempt.retry_in_s"] > 0
    assert retry.attributes["streamfn.attempt.retry"] == 1
    assert chat.attributes["gen_ai.usage.output_tokens"] == 2  # the provider's own count


async def test_a_failure_is_an_error_span_and_an_error_in_the_duration_metric(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    refused = Scripted(StreamError("rate_limit", "slow down", retryable=False))
    providers = [spec(refused, name="flaky", default_model="m1")]
    app = app_for(receiver, providers, default_provider="flaky")
    url = serve(app)
    response = await client.post(f"{url}/chat/stream", json=user("hi"))
    assert response.status_code == 429
    chat = chat_span(receiver)
    assert chat.error
    assert chat.attributes["error.type"] == "rate_limit"
    assert chat.attributes["streamfn.outcome"] == "errored"
    assert attempt_spans(receiver, chat) == []  # one attempt: the chat span is it
    server = server_span(receiver, chat.parent_span_id)
    assert server.attributes["http.response.status_code"] == 429
    points = await flushed_points(app, receiver, "gen_ai.server.request.duration")
    [point] = [p for p in points if p.attributes.get("gen_ai.provider.name") == "flaky"]
    assert point.attributes["error.type"] == "rate_limit"
    # Estimated counts are not the provider's: the token usage metric leaves them out.
    assert not [
        p
        for p in receiver.points("gen_ai.client.token.usage")
        if p.attributes["gen_ai.provider.name"] == "flaky"
    ]


async def flushed_points(app: FastAPI, receiver: Receiver, metric: str) -> list[Any]:
    """`metric`'s points, once a flush has exported them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await flush(app)
        if points := receiver.points(metric):
            return points
        await asyncio.sleep(0.05)
    raise AssertionError(f"{metric} not exported")


async def test_the_genai_metrics_by_provider_and_model(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    app = app_for(receiver)
    url = serve(app)
    usages = []
    for text in ("one two three", "four five six seven"):
        _, events = await stream(client, f"{url}/chat/stream", user(text))
        usages.append(json.loads(next(e.data for e in events if e.event == "usage")))
    receiver.wait_for(lambda r: r.spans_named("chat ")[1:])  # both requests have settled
    by_model = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "echo"}
    by_model |= {"gen_ai.request.model": "echo"}

    [duration] = await flushed_points(app, receiver, "gen_ai.server.request.duration")
    assert (duration.attributes, duration.count, duration.unit) == (by_model, 2, "s")
    assert duration.bounds == list(genai.DURATION_BUCKETS)
    [ttft] = receiver.points("gen_ai.server.time_to_first_token")
    assert (ttft.attributes, ttft.count) == (by_model, 2)
    assert ttft.bounds == list(genai.TTFT_BUCKETS)
    [per_token] = receiver.points("gen_ai.server.time_per_output_token")
    assert per_token.count == 2
    tokens = {
        p.attributes["gen_ai.token.type"]: p for p in receiver.points("gen_ai.client.token.usage")
    }
    assert tokens["input"].sum == sum(u["input_tokens"] for u in usages)
    assert tokens["output"].sum == sum(u["output_tokens"] for u in usages)
    assert (tokens["output"].count, tokens["output"].unit) == (2, "{token}")
    # FastAPI's own HTTP metric comes through the same pipeline.
    assert receiver.points("http.server.request.duration")


async def test_prompts_and_answers_go_into_spans_only_when_asked(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(app_for(receiver, log_content=True))
    system = {"role": "system", "content": "be brief"}
    body = {"messages": [system, {"role": "user", "content": "secret plans"}]}
    response = await client.post(f"{url}/chat/stream", json=body)
    assert response.status_code == 200
    attributes = chat_span(receiver).attributes
    inputs = json.loads(attributes["gen_ai.input.messages"])
    assert inputs[0] == {"role": "system", "parts": [{"type": "text", "content": "be brief"}]}
    assert {"role": "user", "parts": [{"type": "text", "content": "secret plans"}]} in inputs
    [output] = json.loads(attributes["gen_ai.output.messages"])
    assert output["role"] == "assistant"
    assert output["finish_reason"] == "stop"
    assert "secret plans" in output["parts"][0]["content"]  # echo says it back


async def test_the_standard_variables_name_the_service_headers_and_sampler(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
    url = serve(create_app(Settings(usage_records=False, echo_delay_ms=0)))
    assert (await client.post(f"{url}/chat/stream", json=user("hi"))).status_code == 200
    chat = chat_span(receiver)
    assert chat.resource["service.name"] == "gateway"
    assert chat.resource["deployment.environment.name"] == "test"
    assert receiver.headers[0]["x-tenant"] == "acme"

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    app = create_app(Settings(usage_records=False, echo_delay_ms=0))
    url = serve(app)
    before = len(receiver.spans)
    assert (await client.post(f"{url}/chat/stream", json=user("hi"))).status_code == 200
    await flushed_points(app, receiver, "gen_ai.server.request.duration")
    await flush(app)
    assert len(receiver.spans) == before


async def test_flush_exports_before_it_returns(
    receiver: Receiver, serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the Lambda runtime relies on before the environment is frozen: nothing would go
    out on its own for a minute here."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")
    app = app_for(receiver)
    url = serve(app)
    assert (await client.post(f"{url}/chat/stream", json=user("hi"))).status_code == 200
    await asyncio.sleep(0.2)  # the request settles just after its response's end
    await flush(app)
    assert [s.name for s in receiver.spans if s.name.startswith("chat ")] == ["chat echo"]
    assert receiver.points("gen_ai.server.request.duration")


async def test_flush_is_a_no_op_without_export() -> None:
    await flush(create_app(Settings(usage_records=False)))
    await flush(object())  # any ASGI app


CHECK_IMPORTS = """
import asyncio, sys
import httpx
from streamfn.app import create_app
from streamfn.settings import Settings

async def main():
    app = create_app(Settings(usage_records=False, echo_delay_ms=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            body = {"messages": [{"role": "user", "content": "hi"}]}
            response = await c.post("/chat/stream", json=body)
            assert response.status_code == 200, response.text

asyncio.run(main())
heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "google.protobuf",
         "prometheus_client", "streamfn.observability.otel", "streamfn.observability.prometheus")
print(sorted({".".join(m.split(".")[:2]) for m in sys.modules if m.startswith(heavy)}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:9"])
def test_no_exporter_is_imported_without_an_endpoint(endpoint: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STREAMFN_"))}
    if endpoint is not None:
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_EXPORT_TIMEOUT": "100"}
        env |= {"OTEL_EXPORTER_OTLP_TIMEOUT": "0.1"}
    env |= {"STREAMFN_USAGE_DB": os.environ["STREAMFN_USAGE_DB"]}
    env |= {"STREAMFN_STREAMS_DB": os.environ["STREAMFN_STREAMS_DB"]}
    result = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    loaded = result.stdout.strip().splitlines()[-1]
    if endpoint is None:
        assert loaded == "[]", result.stderr
    else:  # the check sees them when they are there
        assert "opentelemetry.sdk" in loaded
        assert "streamfn.observability" in loaded
