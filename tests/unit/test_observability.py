"""Which OTLP signals the standard variables turn on, and the GenAI conventions' shapes of a
request's content: pure functions, no SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamfn.content import Image, Message, Reasoning, Text, Tool, ToolCall
from streamfn.observability import genai
from streamfn.observability.trail import Trail
from streamfn.request import ChatRequest
from streamfn.settings import Settings
from streamfn.telemetry import otlp_urls
from streamfn.usage import UsageRecord


def settings(**values: Any) -> Settings:
    return Settings(**values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, (None, None)),
        (
            {"otel_endpoint": "http://collector:4318/"},
            ("http://collector:4318/v1/traces", "http://collector:4318/v1/metrics"),
        ),
        (
            {"otel_traces_endpoint": "https://x.example/otlp/traces"},
            ("https://x.example/otlp/traces", None),
        ),
        (
            {"otel_endpoint": "http://c:4318", "otel_metrics_endpoint": "http://m:9/in"},
            ("http://c:4318/v1/traces", "http://m:9/in"),
        ),
        (
            {"otel_endpoint": "http://c:4318", "otel_metrics_exporter": "none"},
            ("http://c:4318/v1/traces", None),
        ),
        ({"otel_endpoint": "http://c:4318", "otel_sdk_disabled": True}, (None, None)),
        (
            {"otel_endpoint": "http://c:4318", "otel_traces_protocol": "http/protobuf"},
            ("http://c:4318/v1/traces", "http://c:4318/v1/metrics"),
        ),
        (
            {"otel_endpoint": "http://c:4317", "otel_traces_protocol": "grpc"},
            (None, "http://c:4317/v1/metrics"),
        ),
        (
            {"otel_endpoint": "http://c:4318", "otel_traces_exporter": "console"},
            (None, "http://c:4318/v1/metrics"),
        ),
    ],
)
def test_the_standard_variables_choose_what_is_exported(
    values: dict[str, Any], expected: tuple[str | None, str | None]
) -> None:
    assert otlp_urls(settings(**values)) == expected


def test_the_variables_are_read_under_their_standard_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    # A signal's own protocol wins over the general one.
    assert otlp_urls(Settings()) == (None, "http://c:4318/v1/metrics")


def record(**values: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "request_id": "r1",
        "started_at": 1000.0,
        "identity": None,
        "provider": "bedrock",
        "model": "claude",
        "outcome": "finished",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 4,
        "usage_estimated": False,
        "duration_ms": 900.0,
        "ttft_ms": 300.0,
        "finish_reason": "stop",
    }
    return UsageRecord(**(fields | values))


def test_a_span_names_the_provider_as_the_conventions_do_and_what_was_asked_for() -> None:
    trail = Trail("openai", "gpt-4o", streamed=False)
    request = ChatRequest((Message.of("user", "hi"),), "claude", max_tokens=50, stop=("x",))
    attributes = genai.span_attributes(record(reasoning_tokens=2), request, trail)
    assert attributes["gen_ai.provider.name"] == "aws.bedrock"
    assert attributes["streamfn.provider"] == "bedrock"
    assert attributes["streamfn.requested"] == "openai/gpt-4o"  # a fallback answered
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.stop_sequences"] == ["x"]
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 2
    assert "gen_ai.usage.cache_read.input_tokens" not in attributes  # not reported
    assert attributes["gen_ai.response.time_to_first_chunk"] == 0.3
    assert "error.type" not in attributes
    failed = genai.span_attributes(
        record(outcome="timeout", error_type="timeout", finish_reason=None), request, None
    )
    assert failed["error.type"] == "timeout"
    assert "gen_ai.response.finish_reasons" not in failed
    # A client that left is not a failure of the request.
    cancelled = record(outcome="cancelled", finish_reason=None, client_disconnected=True)
    assert "error.type" not in genai.span_attributes(cancelled, request, None)


def test_content_follows_the_conventions_input_and_output_schemas() -> None:
    call = ToolCall("c1", "weather", '{"city": "Paris"}')
    messages = (
        Message.of("system", "be brief"),
        Message(
            "user",
            (
                Text("what is this?"),
                Image("image/png", data="iVBORw0KGgo="),
                Image(None, url="https://example.com/a.png"),
            ),
        ),
        Message("assistant", (), tool_calls=(call,), reasoning=(Reasoning("thinking"),)),
        Message("tool", (Text("rain"),), tool_call_id="c1"),
    )
    tools = (Tool("weather", "the weather", {"type": "object"}),)
    request = ChatRequest(messages, "m", tools=tools)
    attributes = genai.content_attributes(messages, request, "It rains.", record())
    inputs = json.loads(attributes["gen_ai.input.messages"])
    assert inputs[0] == {"role": "system", "parts": [{"type": "text", "content": "be brief"}]}
    assert inputs[1]["parts"] == [
        {"type": "text", "content": "what is this?"},
        {"type": "image", "mime_type": "image/png", "size": 9},  # no bytes in a span
        {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"},
    ]
    assert inputs[2]["parts"] == [
        {"type": "reasoning", "content": "thinking"},
        {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}},
    ]
    assert inputs[3] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "c1", "response": "rain"}],
    }
    assert json.loads(attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "It rains."}],
            "finish_reason": "stop",
        }
    ]
    [tool] = json.loads(attributes["gen_ai.tool.definitions"])
    assert (tool["type"], tool["name"]) == ("function", "weather")


def test_attempts_are_named_by_their_role() -> None:
    trail = Trail("a", "m")
    trail.started(0, "a", "m")
    trail.started(0, "a", "m")
    trail.started(1, "b", "n")
    assert [genai.attempt_name(a) for a in trail.attempts] == [
        "attempt a/m",
        "retry a/m",
        "fallback b/n",
    ]
