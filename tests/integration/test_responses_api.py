"""The OpenAI Responses API (`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`),
driven by the official openai Python SDK (`responses.stream`, `responses.create`, chains by
`previous_response_id`, its typed errors) and read raw off the wire, against a real uvicorn
server with the echo provider and scripted ones, and a real SQLite file for stored responses."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import (
    Finish,
    ReasoningDelta,
    ReasoningEnd,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamfn.content import Reasoning, ToolCall
from streamfn.providers.echo import EchoProvider, sign
from streamfn.settings import Settings
from tests.keys import create_key
from tests.providers import Observed, Scripted, spec
from tests.sse_client import Received, stream

Serve = Callable[[ASGIApp], str]
Client = Callable[..., openai.OpenAI]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def echo_app(tmp_path: Path, **settings: Any) -> ASGIApp:
    options = {"echo_delay_ms": 0, "usage_records": False, "streams_db": tmp_path / "s.db"}
    return create_app(Settings(**{**options, **settings}))


def scripted_app(tmp_path: Path, *steps: Any) -> ASGIApp:
    settings = Settings(usage_records=False, streams_db=tmp_path / "s.db")
    return create_app(settings, providers=[spec(Scripted(*steps))])


@pytest.fixture
def sdk() -> Iterator[Client]:
    """`sdk(url, **options)`: the openai SDK's client for a server; closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(url: str, **options: Any) -> openai.OpenAI:
        options = {"api_key": "unused", "max_retries": 0, **options}
        clients.append(openai.OpenAI(base_url=f"{url}/v1", **options))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


async def raw(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], **headers: str
) -> tuple[httpx.Response, list[Received]]:
    body = {"model": "echo", "stream": True, **body}
    return await stream(client, f"{url}/v1/responses", body, headers=headers or None)


def data(events: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events]


# --- streams, as OpenAI sends them ----------------------------------------------------------


async def test_a_stream_is_the_apis_events_named_and_numbered(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = serve(echo_app(tmp_path))
    response, events = await raw(client, url, {"input": "one two three"})
    assert response.status_code == 200
    assert [e.event for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    bodies = data(events)
    assert all(b["type"] == e.event for b, e in zip(bodies, events, strict=True))
    assert [b["sequence_number"] for b in bodies] == list(range(len(bodies)))
    created = bodies[0]["response"]
    assert created["status"] == "in_progress"
    assert created["output"] == []
    assert created["id"].startswith("resp_")
    item_id = bodies[2]["item"]["id"]
    assert item_id.startswith("msg_")
    assert [b["delta"] for b in bodies[4:7]] == ["one", " two", " three"]
    assert all(b["item_id"] == item_id and b["output_index"] == 0 for b in bodies[3:9])
    assert bodies[7]["text"] == "one two three"
    final = bodies[-1]["response"]
    assert final["status"] == "completed"
    assert final["completed_at"] >= final["created_at"]
    assert final["output"] == [
        {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "one two three", "annotations": [], "logprobs": []}
            ],
        }
    ]
    usage = final["usage"]
    assert usage["output_tokens"] == 3
    assert usage["total_tokens"] == usage["input_tokens"] + 3
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}


def test_the_sdks_stream_helper_assembles_the_answer(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    client = sdk(serve(echo_app(tmp_path)))
    texts: list[str] = []
    with client.responses.stream(model="echo", input="hello there world") as events:
        for event in events:
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
        final = events.get_final_response()
    assert texts == ["hello", " there", " world"]
    assert final.output_text == "hello there world"
    assert final.status == "completed"
    assert final.usage is not None
    assert final.usage.output_tokens == 3


def test_create_without_a_stream_is_the_same_response(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    client = sdk(serve(echo_app(tmp_path)))
    made = client.responses.create(model="echo", input="not streamed", instructions="be brief")
    assert made.output_text == "not streamed"
    assert made.status == "completed"
    assert made.instructions == "be brief"
    assert made.output[0].id.startswith("msg_")
    # What GET returns is what was made.
    assert client.responses.retrieve(made.id).model_dump() == made.model_dump()


def test_a_chain_goes_on_from_the_stored_response_and_its_tool_call(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    client = sdk(serve(echo_app(tmp_path)))
    first = client.responses.create(
        model="echo", input='/call get_weather {"city": "Paris"}', tools=[WEATHER]
    )
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1
    assert (calls[0].name, json.loads(calls[0].arguments)) == ("get_weather", {"city": "Paris"})
    # The tool result answers a call only the stored response holds: without the chain it would
    # be refused (a result of no call), with it echo answers with the result.
    with client.responses.stream(
        model="echo",
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
    ) as events:
        second = events.get_final_response()
    assert "sunny" in second.output_text
    assert second.previous_response_id == first.id
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="echo",
            tools=[WEATHER],
            input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "x"}],
        )
    assert refused.value.body["param"] == "messages.0.tool_call_id"  # type: ignore[index]


def test_a_stored_response_is_its_owners_alone(serve: Serve, sdk: Client, tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    alice, _ = create_key(db, "alice")
    bob, _ = create_key(db, "bob")
    url = serve(echo_app(tmp_path, auth="api_key", keys_db=db))
    mine = sdk(url, api_key=alice)
    theirs = sdk(url, api_key=bob)
    made = mine.responses.create(model="echo", input="private words")
    assert mine.responses.retrieve(made.id).output_text == "private words"
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as chained:
        theirs.responses.create(model="echo", input="more", previous_response_id=made.id)
    assert chained.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(made.id)
    assert mine.responses.retrieve(made.id).id == made.id  # bob's delete deleted nothing
    mine.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(made.id)


def test_store_false_keeps_nothing(serve: Serve, sdk: Client, tmp_path: Path) -> None:
    client = sdk(serve(echo_app(tmp_path)))
    made = client.responses.create(model="echo", input="forget me", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)


# --- reasoning ------------------------------------------------------------------------------


def test_reasoning_streams_as_a_summary_and_its_signature_survives_a_client_kept_turn(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    client = sdk(serve(echo_app(tmp_path)))
    summary: list[str] = []
    with client.responses.stream(
        model="echo",
        input="think about this",
        reasoning={"effort": "low", "summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
    ) as events:
        for event in events:
            if event.type == "response.reasoning_summary_text.delta":
                summary.append(event.delta)
        final = events.get_final_response()
    thought = final.output[0]
    assert thought.type == "reasoning"
    text = "".join(summary)
    assert text == "The user wrote 3 words. I will repeat them exactly."
    assert [s.text for s in thought.summary] == [text]
    assert thought.encrypted_content == sign(text)
    assert final.output_text == "think about this"
    assert final.usage is not None
    assert final.usage.output_tokens_details.reasoning_tokens > 0
    history = [
        {"role": "user", "content": "think about this"},
        *(o.model_dump(exclude_none=True) for o in final.output),
        {"role": "user", "content": "again"},
    ]
    again = client.responses.create(
        model="echo", input=history, reasoning={"effort": "low"}, store=False
    )
    assert again.output_text == "again"
    # Echo checks a signed block sent back against its text: a changed one is refused.
    history[1] = {**history[1], "summary": [{"type": "summary_text", "text": "changed"}]}
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="echo", input=history, reasoning={"effort": "low"})


def test_an_item_reference_is_the_stored_item_it_names_signed(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    echo = Observed(EchoProvider(delay_s=0))
    settings = Settings(usage_records=False, streams_db=tmp_path / "s.db")
    client = sdk(serve(create_app(settings, providers=[spec(echo)])))
    first = client.responses.create(model="echo", input="one two", reasoning={"effort": "low"})
    thought, message = first.output
    assert thought.type == "reasoning"
    assert thought.encrypted_content is None  # not asked for: kept, not shown
    # As the AI SDK sends a stored reasoning item back: by reference. The provider gets the
    # block with its signature, which only the store has.
    again = client.responses.create(
        model="echo",
        reasoning={"effort": "low"},
        input=[
            {"role": "user", "content": "one two"},
            {"type": "item_reference", "id": thought.id},
            message.model_dump(exclude_none=True),
            {"role": "user", "content": "three"},
        ],
    )
    assert again.output_text == "three"
    [block] = echo.requests[-1].messages[1].reasoning
    assert block.signature == sign(block.text)
    # A chain by previous_response_id carries it too.
    client.responses.create(
        model="echo", previous_response_id=first.id, input="four", reasoning={"effort": "low"}
    )
    [block] = echo.requests[-1].messages[1].reasoning
    assert block.signature == sign(block.text)
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(
            model="echo", input=[{"type": "item_reference", "id": "rs_nothing_0"}]
        )
    assert missing.value.body["param"] == "input.0.id"  # type: ignore[index]


# --- items one after another ----------------------------------------------------------------


async def test_interleaved_parallel_calls_become_items_one_after_another(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    app = scripted_app(
        tmp_path,
        TextDelta("Checking."),
        ToolCallStart("call_a", "get_weather"),
        ToolCallStart("call_b", "get_weather"),
        ToolCallDelta("call_a", '{"city":'),
        ToolCallDelta("call_b", '{"city": "Oslo"}'),
        ToolCallDelta("call_a", ' "Rome"}'),
        ToolCallEnd(ToolCall("call_a", "get_weather", '{"city": "Rome"}')),
        ToolCallEnd(ToolCall("call_b", "get_weather", '{"city": "Oslo"}')),
        Finish("tool_calls", Usage(10, 5)),
    )
    _, events = await raw(client, serve(app), {"input": "weather?", "tools": [WEATHER]})
    bodies = data(events)
    added = [b for b in bodies if b["type"] == "response.output_item.added"]
    assert [(b["output_index"], b["item"]["type"]) for b in added] == [
        (0, "message"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    deltas = [b for b in bodies if b["type"] == "response.function_call_arguments.delta"]
    assert [(b["output_index"], b["delta"]) for b in deltas] == [
        (1, '{"city":'),
        (1, ' "Rome"}'),
        (2, '{"city": "Oslo"}'),
    ]
    # Each item is done before the next is added.
    kinds = [b["type"] for b in bodies]
    assert kinds.index("response.output_item.added", kinds.index("response.output_item.done")) > 0
    final = bodies[-1]["response"]
    calls = [o for o in final["output"] if o["type"] == "function_call"]
    assert [(c["call_id"], c["arguments"]) for c in calls] == [
        ("call_a", '{"city": "Rome"}'),
        ("call_b", '{"city": "Oslo"}'),
    ]
    assert final["status"] == "completed"


# Codex's apply_patch, as it offers the tool to the models it knows as OpenAI's.
PATCH_TOOL: Any = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch"'},
}
PATCH = '*** Begin Patch\n*** Add File: a.txt\n+say "hi"\n*** End Patch'


def test_a_custom_tool_is_a_function_of_one_input_for_a_provider_without_them(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    arguments = json.dumps({"input": PATCH})
    observed = Observed(
        Scripted(
            ToolCallStart("call_p", "apply_patch"),
            ToolCallDelta("call_p", arguments[:20]),
            ToolCallDelta("call_p", arguments[20:]),
            ToolCallEnd(ToolCall("call_p", "apply_patch", arguments)),
            Finish("tool_calls", Usage(10, 5)),
        )
    )
    settings = Settings(usage_records=False, streams_db=tmp_path / "s.db")
    client = sdk(serve(create_app(settings, providers=[spec(observed)])))
    with client.responses.stream(model="echo", input="Add a.txt", tools=[PATCH_TOOL]) as events:
        seen = list(events)
        final = events.get_final_response()
    [offered] = observed.requests[0].tools
    assert offered.name == "apply_patch"
    assert offered.parameters["required"] == ["input"]
    assert 'start: "*** Begin Patch"' in offered.parameters["properties"]["input"]["description"]
    # The SDK reads them as OpenAI's own: the input, unwrapped, in its events and its item.
    kinds = [e.type for e in seen]
    assert "response.function_call_arguments.delta" not in kinds
    [delta] = [e for e in seen if e.type == "response.custom_tool_call_input.delta"]
    [done] = [e for e in seen if e.type == "response.custom_tool_call_input.done"]
    assert (delta.delta, done.input) == (PATCH, PATCH)  # type: ignore[union-attr]
    [call] = final.output
    assert call.type == "custom_tool_call"
    assert (call.call_id, call.name, call.input) == ("call_p", "apply_patch", PATCH)
    assert call.id is not None
    assert call.id.startswith("ctc_")

    # The next turn sends the call back with its output, as Codex does (store false).
    observed.inner = Scripted(TextDelta("Done."), Finish("stop", Usage(20, 2)))
    again = client.responses.create(
        model="echo",
        store=False,
        tools=[PATCH_TOOL],
        input=[
            {"role": "user", "content": "Add a.txt"},
            {
                "type": "custom_tool_call",
                "call_id": "call_p",
                "name": "apply_patch",
                "input": PATCH,
            },
            {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
        ],
    )
    assert again.output_text == "Done."
    _, turn, result = observed.requests[1].messages
    assert [(c.id, c.name, json.loads(c.arguments)) for c in turn.tool_calls] == [
        ("call_p", "apply_patch", {"input": PATCH})
    ]
    assert (result.role, result.tool_call_id, result.text) == ("tool", "call_p", "Done!")


async def test_max_tokens_is_an_incomplete_response(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    app = scripted_app(tmp_path, TextDelta("cut"), Finish("length", Usage(3, 1)))
    _, events = await raw(client, serve(app), {"input": "long answer"})
    assert events[-1].event == "response.incomplete"
    final = json.loads(events[-1].data)["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_a_failure_mid_stream_is_an_error_event_then_a_failed_response(
    serve: Serve, client: httpx.AsyncClient, sdk: Client, tmp_path: Path
) -> None:
    url = serve(
        scripted_app(
            tmp_path,
            ReasoningDelta("hmm"),
            ReasoningEnd(Reasoning("hmm", "sig")),
            TextDelta("partial"),
            StreamError("upstream_error", "the provider failed", retryable=True),
        )
    )
    _, events = await raw(client, url, {"input": "go"})
    assert [e.event for e in events[-2:]] == ["error", "response.failed"]
    error, failed = data(events[-2:])
    assert (error["code"], error["message"]) == ("server_error", "the provider failed")
    response = failed["response"]
    assert response["status"] == "failed"
    assert response["error"] == {"code": "server_error", "message": "the provider failed"}
    assert [(o["type"], o.get("status")) for o in response["output"]] == [
        ("reasoning", None),
        ("message", "incomplete"),
    ]
    # The failed response is stored too, as OpenAI's are.
    stored = sdk(url).responses.retrieve(response["id"])
    assert stored.status == "failed"


# --- what cannot be served ------------------------------------------------------------------


def test_what_cannot_be_honoured_is_a_400_naming_the_field(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    client = sdk(serve(echo_app(tmp_path)))
    schema = {"type": "json_schema", "name": "x", "schema": {"type": "object"}}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"text": {"format": schema}}, "text.format"),
        ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input.0.type"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input.0.content.0"),
        ({"background": True}, "background"),
        ({"tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"frobnicate": 1}, "frobnicate"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="echo", input="hi", extra_body=extra)
        assert refused.value.body["param"] == param, extra  # type: ignore[index]


def test_hosted_tools_are_left_out_and_function_tools_in_a_namespace_are_offered(
    serve: Serve, sdk: Client, tmp_path: Path
) -> None:
    client = sdk(serve(echo_app(tmp_path)))
    made = client.responses.create(
        model="echo",
        input="/call get_weather {}",
        tools=[
            {"type": "web_search"},
            {"type": "namespace", "name": "weather", "description": "w", "tools": [WEATHER]},
        ],  # type: ignore[list-item]
    )
    assert [o.type for o in made.output] == ["function_call"]
    assert made.tools[0].type == "web_search"  # echoed as asked


async def test_an_unknown_response_is_404_in_openais_shape(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = serve(echo_app(tmp_path))
    got = await client.get(f"{url}/v1/responses/resp_missing")
    assert got.status_code == 404
    assert got.json()["error"]["message"] == "Response with id 'resp_missing' not found."
    deleted = await client.delete(f"{url}/v1/responses/resp_missing")
    assert deleted.status_code == 404


async def test_a_websocket_handshake_is_told_to_use_http(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Codex's WebSocket transport tries `GET /v1/responses` with `Upgrade: websocket` first: a
    426 sends it to HTTP at once."""
    url = serve(echo_app(tmp_path))
    upgrade = {"connection": "Upgrade", "upgrade": "websocket", "sec-websocket-version": "13"}
    refused = await client.get(f"{url}/v1/responses", headers=upgrade)
    assert refused.status_code == 426
    assert "POST /v1/responses" in refused.json()["error"]["message"]
    plain = await client.get(f"{url}/v1/responses")
    assert plain.status_code == 405  # not a route
