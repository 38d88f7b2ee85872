"""The `GenerateContentRequest` a `ChatRequest` becomes: contents, signatures back on the parts
they came on (and only Gemini's), function responses, tools and options; and the fake's own
check of signatures, which the integration tests rely on."""

from __future__ import annotations

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
)
from streamfn.providers.gemini.body import SKIP_VALIDATOR, body
from streamfn.providers.gemini.provider import GeminiProvider, model_path
from streamfn.request import ChatRequest
from tests.fakes import gemini as g

QUESTION = Message.of("user", "Weather in Paris, and the time?")
WEATHER = ToolCall("call_w", "get_weather", '{"city": "Paris"}', g.CALL_SIGNATURE)
TIME = ToolCall("call_t", "get_time", "{}")


def chat(*messages: Message, model: str = "gemini-3-flash-preview", **options: Any) -> ChatRequest:
    return ChatRequest(messages=messages, model=model, **options)


def results() -> tuple[Message, Message]:
    return (
        Message("tool", (Text("18C"),), tool_call_id="call_w"),
        Message("tool", (Text('{"time": "noon"}'),), tool_call_id="call_t"),
    )


def test_a_tool_round_trip_as_gemini_contents() -> None:
    turn = Message(
        "assistant",
        (Text("Checking."),),
        (WEATHER, TIME),
        reasoning=(
            Reasoning("Need both.", signature=f"gemini:{g.THOUGHT_SIGNATURE}"),
            Reasoning("unsigned thoughts"),
            Reasoning(signature=f"gemini:{g.TEXT_SIGNATURE}"),
        ),
    )
    sent = body(chat(Message.of("system", "Be brief."), QUESTION, turn, *results()))
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris, and the time?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Need both.", "thought": True, "thoughtSignature": g.THOUGHT_SIGNATURE},
                {"text": "Checking.", "thoughtSignature": g.TEXT_SIGNATURE},
                {
                    "functionCall": {
                        "id": "call_w",
                        "name": "get_weather",
                        "args": {"city": "Paris"},
                    },
                    "thoughtSignature": g.CALL_SIGNATURE,
                },
                {"functionCall": {"id": "call_t", "name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "call_w",
                        "name": "get_weather",
                        "response": {"result": "18C"},
                    }
                },
                {
                    "functionResponse": {
                        "id": "call_t",
                        "name": "get_time",
                        "response": {"time": "noon"},
                    }
                },
            ],
        },
    ]
    assert g.signature_problem(sent) is None


def test_another_providers_signatures_are_not_sent_and_its_first_call_gets_the_bypass() -> None:
    """A conversation begun with Anthropic: its signed thinking means nothing to Gemini, and
    its calls have no thought signature, which Gemini 3 would refuse in the current turn."""
    turn = Message(
        "assistant",
        (),
        (
            ToolCall("toolu_w", "get_weather", '{"city": "Paris"}'),
            ToolCall("toolu_t", "get_time", "{}"),
        ),
        reasoning=(Reasoning("Need the weather.", signature="EqQBCgIYAh-sig"),),
    )
    result = Message("tool", (Text("18C"),), tool_call_id="toolu_w")
    other = Message("tool", (Text("noon"),), tool_call_id="toolu_t")
    sent = body(chat(QUESTION, turn, result, other))
    model = sent["contents"][1]
    assert model["parts"] == [
        {
            "functionCall": {"id": "toolu_w", "name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": SKIP_VALIDATOR,
        },
        {"functionCall": {"id": "toolu_t", "name": "get_time", "args": {}}},
    ]
    assert g.signature_problem(sent) is None


def test_the_bypass_is_for_the_current_turn_and_for_models_that_check() -> None:
    earlier = Message("assistant", (), (ToolCall("a", "get_time", "{}"),))
    answer = Message("tool", (Text("noon"),), tool_call_id="a")
    later = Message("assistant", (), (ToolCall("b", "get_time", "{}"),))
    again = Message("tool", (Text("one"),), tool_call_id="b")
    messages = (QUESTION, earlier, answer, Message.of("assistant", "It is noon."))
    messages += (Message.of("user", "And now?"), later, again)
    sent = body(chat(*messages))
    firsts = [c["parts"][0] for c in sent["contents"] if "functionCall" in c["parts"][0]]
    assert [p.get("thoughtSignature") for p in firsts] == [None, SKIP_VALIDATOR]
    for model in ("gemini-2.5-flash", "models/gemini-2.0-flash", "gemma-3-27b-it"):
        sent = body(chat(*messages, model=model))
        assert "thoughtSignature" not in str(sent), model


def test_a_client_may_send_a_signature_in_the_url_safe_alphabet() -> None:
    url_safe = g.CALL_SIGNATURE.replace("+", "-").replace("/", "_")
    turn = Message("assistant", (), (ToolCall("c", "get_time", "{}", url_safe),))
    sent = body(chat(QUESTION, turn, Message("tool", (Text("noon"),), tool_call_id="c")))
    assert sent["contents"][1]["parts"][0]["thoughtSignature"] == url_safe  # verbatim
    assert g.signature_problem(sent) is None


def test_the_fake_refuses_what_gemini_refuses() -> None:
    def contents(*model_parts: dict[str, Any]) -> dict[str, Any]:
        return {
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": list(model_parts)},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
            ]
        }

    call = {"functionCall": {"name": "get_time", "args": {}}}
    problem = g.signature_problem(contents(call))
    assert problem is not None
    assert problem.startswith("Function call is missing a thought_signature")
    tampered = {**call, "thoughtSignature": "AAAA" + g.CALL_SIGNATURE[4:]}
    assert g.signature_problem(contents(tampered)) == "Corrupted thought signature."
    # A signature on the second call only does not help: the first of the step needs one.
    assert g.signature_problem(contents(call, {**call, "thoughtSignature": g.CALL_SIGNATURE}))


def test_images_go_inline_and_an_image_url_is_refused_by_name() -> None:
    png = "iVBORw0KGgo="
    image = Message("user", (Text("What is this?"), Image("image/png", data=png)))
    assert body(chat(image))["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": png}},
            ],
        }
    ]
    linked = Message("user", (Text("And this?"), Image(None, url="https://example.com/a.png")))
    with pytest.raises(InvalidContent) as refused:
        body(chat(linked))
    assert refused.value.param == "messages.0.content.1.url"


def test_tools_options_and_thinking() -> None:
    tool = Tool("get_weather", "Current weather", {"type": "object", "properties": {}})
    sent = body(
        chat(
            QUESTION,
            tools=(tool,),
            tool_choice=NamedTool("get_weather"),
            temperature=0.3,
            top_p=0.9,
            max_tokens=256,
            stop=("END",),
            reasoning=ReasoningOption(effort="minimal"),
        )
    )
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "parametersJsonSchema": {"type": "object", "properties": {}},
                    "description": "Current weather",
                }
            ]
        }
    ]
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert sent["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "maxOutputTokens": 256,
        "stopSequences": ["END"],
        "thinkingConfig": {"includeThoughts": True, "thinkingLevel": "MINIMAL"},
    }
    budget = body(chat(QUESTION, reasoning=ReasoningOption(budget_tokens=2048)))
    assert budget["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 2048,
    }
    for choice, mode in (("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")):
        sent = body(chat(QUESTION, tools=(tool,), tool_choice=choice))
        assert sent["toolConfig"] == {"functionCallingConfig": {"mode": mode}}
    assert "toolConfig" not in body(chat(QUESTION, tools=(tool,)))
    assert set(body(chat(QUESTION))) == {"contents"}


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gemini-3-flash-preview", "models/gemini-3-flash-preview"),
        ("models/gemini-2.5-pro", "models/gemini-2.5-pro"),
        ("tunedModels/my-model-1", "tunedModels/my-model-1"),
        ("a/../b?key=x#y", "models/a%2F..%2Fb%3Fkey%3Dx%23y"),
    ],
)
def test_the_model_is_one_path_segment(model: str, path: str) -> None:
    assert model_path(model) == path


async def test_the_url_follows_the_base_url_and_the_api_version() -> None:
    provider = GeminiProvider(
        api_key="k",
        base_url="https://proxy.example/gemini/",
        total_timeout_s=5,
        connect_timeout_s=1,
    )
    try:
        assert provider.url("gemini-3-pro") == (
            "https://proxy.example/gemini/v1beta/models/gemini-3-pro:streamGenerateContent?alt=sse"
        )
    finally:
        await provider.aclose()
