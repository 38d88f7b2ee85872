"""A ChatRequest as a ConverseStream body (service-2.json's shapes), what Converse cannot take
refused by name, Bedrock's field names read back as ours, and when the provider is offered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamfn.content import (
    Image,
    InvalidContent,
    Message,
    NamedTool,
    Reasoning,
    ReasoningOption,
    Text,
    Tool,
    ToolCall,
    tag_signature,
)
from streamfn.providers.bedrock import CAPABILITIES, credentials_hint, enabled
from streamfn.providers.bedrock.converse import body, field_of
from streamfn.request import ChatRequest
from streamfn.settings import Settings

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)
WEATHER = Tool("get_weather", "Current weather", {"type": "object", "properties": {}})


def request(*messages: Message, **options: Any) -> ChatRequest:
    return ChatRequest(
        messages=messages, model=options.pop("model", "amazon.nova-pro-v1:0"), **options
    )


def test_a_whole_conversation_in_converse_terms() -> None:
    conversation = request(
        Message.of("system", "Be terse."),
        Message("user", (Text("What is this?"), Image("image/png", data=PNG))),
        Message(
            "assistant",
            (Text(""),),
            (ToolCall("tooluse_1", "get_weather", '{"city": "Paris"}'), ToolCall("t2", "x", "")),
            reasoning=(
                Reasoning("Thinking.", signature="sig=="),
                Reasoning(redacted="cmVkYWN0ZWQ="),
                Reasoning("Plain reasoning of another provider."),
                Reasoning("Gemini's.", signature=tag_signature("gemini", "g-sig")),
            ),
        ),
        Message("tool", (Text("18C"),), tool_call_id="tooluse_1"),
        Message("tool", (Text(""),), tool_call_id="t2"),
        Message.of("user", "And tomorrow?"),
        Message.of("system", "Answer in French."),
        Message.of("assistant", ""),  # an empty turn is left out
        Message.of("user", "Merci."),
        max_tokens=100,
        temperature=0.2,
        top_p=0.9,
        stop=("END", ""),
        tools=(WEATHER,),
        tool_choice="auto",
    )
    sent, origins = body(conversation)
    assert sent == {
        "system": [{"text": "Be terse."}, {"text": "Answer in French."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "reasoningContent": {
                            "reasoningText": {"text": "Thinking.", "signature": "sig=="}
                        }
                    },
                    {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        }
                    },
                    {"toolUse": {"toolUseId": "t2", "name": "x", "input": {}}},
                ],
            },
            {
                # Tool results and the user's next words: one user turn, as Converse wants.
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
                    {"toolResult": {"toolUseId": "t2", "content": [{"text": ""}]}},
                    {"text": "And tomorrow?"},
                    {"text": "Merci."},
                ],
            },
        ],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "inputSchema": {"json": {"type": "object", "properties": {}}},
                        "description": "Current weather",
                    }
                }
            ],
            "toolChoice": {"auto": {}},
        },
    }
    assert origins == [1, 2, 3]  # each Bedrock message's first request message


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        (NamedTool("get_weather"), {"tool": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    sent, _ = body(request(Message.of("user", "hi"), tools=(WEATHER,), tool_choice=choice))
    assert sent["toolConfig"].get("toolChoice") == expected


def test_tool_choice_none_leaves_the_tools_out() -> None:
    sent, _ = body(request(Message.of("user", "hi"), tools=(WEATHER,), tool_choice="none"))
    assert "toolConfig" not in sent


@pytest.mark.parametrize(
    ("model", "option", "expected"),
    [
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ReasoningOption(budget_tokens=2048),
            {
                "additionalModelRequestFields": {
                    "thinking": {"type": "enabled", "budget_tokens": 2048}
                }
            },
        ),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-4-6-v1",
            ReasoningOption(effort="xhigh"),
            {
                "outputConfig": {"effort": "xhigh"},
                "additionalModelRequestFields": {"thinking": {"type": "adaptive"}},
            },
        ),
        (
            "amazon.nova-pro-v1:0",
            ReasoningOption(effort="low"),
            {"outputConfig": {"effort": "low"}},
        ),
    ],
)
def test_reasoning_options(model: str, option: ReasoningOption, expected: dict[str, Any]) -> None:
    sent, _ = body(request(Message.of("user", "hi"), model=model, reasoning=option))
    assert {k: sent[k] for k in sent if k not in ("messages", "inferenceConfig")} == expected


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        (
            {"messages": (Message("user", (Image(None, url="https://x.test/a.png"),)),)},
            "messages.0.content.0.url",
            "data: URLs only",
        ),
        ({"reasoning": ReasoningOption(effort="minimal")}, "reasoning.effort", "xhigh"),
        ({"reasoning": ReasoningOption(budget_tokens=100)}, "reasoning.budget_tokens", "1024"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls", "cannot turn parallel"),
        (
            {
                "tool_choice": "none",
                "messages": (
                    Message.of("user", "hi"),
                    Message("assistant", (), (ToolCall("c1", "get_weather", "{}"),)),
                    Message("tool", (Text("18C"),), tool_call_id="c1"),
                ),
            },
            "tool_choice",
            "tool_choice none",
        ),
    ],
)
def test_what_converse_cannot_take_is_refused_by_name(
    change: dict[str, Any], param: str, words: str
) -> None:
    options: dict[str, Any] = {"tools": (WEATHER,), **change}
    messages = options.pop("messages", (Message.of("user", "hi"),))
    with pytest.raises(InvalidContent) as refused:
        CAPABILITIES.check(request(*messages, **options), "bedrock")
    assert refused.value.param == param
    assert words in refused.value.message


def test_what_converse_takes_passes() -> None:
    CAPABILITIES.check(
        request(
            Message("user", (Text("hi"), Image("image/png", data=PNG))),
            tools=(WEATHER,),
            tool_choice="none",
            reasoning=ReasoningOption(effort="max"),
        ),
        "bedrock",
    )


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (
            "1 validation error detected: Value '0' at 'inferenceConfig.maxTokens' failed to "
            "satisfy constraint: Member must have value greater than or equal to 1",
            "max_tokens",
        ),
        (
            "The model returned the following errors: max_tokens must be greater than "
            "thinking.budget_tokens",
            "reasoning.budget_tokens",
        ),
        ("The value at messages.1.content.0 is blank", "messages.3"),
        (
            "The model returned the following errors: messages.1.content.0: Invalid "
            "`signature` in `thinking` block",
            "messages.3",
        ),
        ("messages.7: out of range", "messages"),
        ("The model returned the following errors: temperature: range: 0..1", "temperature"),
        ("Value at 'toolConfig.tools.1.member.toolSpec.name' failed", "tools.1"),
        ("This model doesn't support the toolConfig.toolChoice.any field.", "tool_choice"),
        ("The provided model identifier is invalid.", None),
    ],
)
def test_a_validation_message_names_the_request_field(message: str, field: str | None) -> None:
    assert field_of(message, origins=[0, 3]) == field


# --- when `bedrock` is offered ----------------------------------------------------------------


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """An environment without AWS: no variables, no shared files, not Lambda."""
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        monkeypatch.delenv(name, raising=False)
    return {
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }


@pytest.mark.parametrize(
    ("env", "offered"),
    [
        ({}, False),
        ({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, False),  # no region
        ({"AWS_REGION": "eu-west-1"}, False),  # no credentials
        ({"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, True),
        ({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_PROFILE": "dev"}, True),
        ({"AWS_REGION": "eu-west-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://x"}, True),
        (
            {"AWS_REGION": "eu-west-1", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "r"},
            True,
        ),
        ({"AWS_REGION": "eu-west-1", "AWS_BEARER_TOKEN_BEDROCK": "k"}, True),
        ({"STREAMFN_BEDROCK_MODEL": "amazon.nova-lite-v1:0"}, True),  # asked for by name
        ({"STREAMFN_DEFAULT_PROVIDER": "bedrock"}, True),
        ({"AWS_LAMBDA_FUNCTION_NAME": "streamfn"}, True),  # the function's role
    ],
)
def test_offered_when_a_region_and_credentials_can_be_seen(
    monkeypatch: pytest.MonkeyPatch, no_aws: dict[str, str], env: dict[str, str], offered: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert enabled(Settings(), {**no_aws, **env}) is offered


def test_shared_files_count_as_region_and_credentials(no_aws: dict[str, str]) -> None:
    Path(no_aws["AWS_CONFIG_FILE"]).write_text("[default]\nregion = eu-west-1\n")
    assert credentials_hint(Settings(), no_aws) == "shared config files"
    assert enabled(Settings(), no_aws)
