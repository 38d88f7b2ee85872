"""Content no provider could use: each is a 4xx whose body names the field, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.integration.test_tool_round_trips import PNG, PNG_URL

Serve = Callable[[ASGIApp], str]

ASK = {"role": "user", "content": "hi"}
TOOL = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}


def with_image(url: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "image", "url": url}]}]}


def with_tool(**tool: Any) -> dict[str, Any]:
    return {"messages": [ASK], "tools": [{"name": "t", **tool}]}


CALL = {"id": "call_1", "name": "get_time", "arguments": "{}"}

CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    # (case, body, status, field named, words in the message)
    (
        "schema not an object",
        with_tool(parameters={"type": "string"}),
        400,
        "tools.0.parameters",
        "must describe an object",
    ),
    (
        "properties not a map",
        with_tool(parameters={"type": "object", "properties": []}),
        400,
        "tools.0.parameters.properties",
        "must be an object",
    ),
    (
        "nested schema not a schema",
        with_tool(parameters={"type": "object", "properties": {"a": "string"}}),
        400,
        "tools.0.parameters.properties.a",
        "JSON Schema object",
    ),
    (
        "required not names",
        with_tool(parameters={"type": "object", "required": "a"}),
        400,
        "tools.0.parameters.required",
        "list of names",
    ),
    (
        "schema not JSON object",
        with_tool(parameters="object"),
        422,
        "tools.0.parameters",
        "dictionary",
    ),
    (
        "tool name with a space",
        {"messages": [ASK], "tools": [{**TOOL, "name": "get time"}]},
        400,
        "tools.0.name",
        "letters, digits",
    ),
    (
        "tool defined twice",
        {"messages": [ASK], "tools": [TOOL, TOOL]},
        400,
        "tools.1.name",
        "defined twice",
    ),
    (
        "tool_choice names no tool",
        {"messages": [ASK], "tools": [TOOL], "tool_choice": {"name": "nope"}},
        400,
        "tool_choice",
        "not in tools",
    ),
    (
        "tool result answers no call",
        {"messages": [ASK, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]},
        400,
        "messages.1.tool_call_id",
        "answers no tool call",
    ),
    (
        "tool result before its call",
        {
            "messages": [
                ASK,
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "assistant", "tool_calls": [CALL]},
            ]
        },
        400,
        "messages.1.tool_call_id",
        "answers no tool call",
    ),
    # Fields a role does not take, or lacks: bodies of the schema (which does not say which go
    # with which role), refused as content that cannot be used.
    (
        "tool message without tool_call_id",
        {"messages": [ASK, {"role": "tool", "content": "x"}]},
        400,
        "messages.1.tool_call_id",
        "a tool message needs tool_call_id",
    ),
    (
        "tool_call_id on a user message",
        {"messages": [{**ASK, "tool_call_id": "call_1"}]},
        400,
        "messages.0.tool_call_id",
        "only tool messages",
    ),
    (
        "call arguments not an object",
        {"messages": [ASK, {"role": "assistant", "tool_calls": [{**CALL, "arguments": "[1]"}]}]},
        400,
        "messages.1.tool_calls.0.arguments",
        "JSON object",
    ),
    (
        "call id repeated",
        {"messages": [ASK, {"role": "assistant", "tool_calls": [CALL, CALL]}]},
        400,
        "messages.1.tool_calls.1.id",
        "repeated",
    ),
    (
        "unknown part type",
        {"messages": [{"role": "user", "content": [{"type": "audio", "data": "x"}]}]},
        422,
        "messages.0.content",
        "audio",
    ),
    (
        "image not a data or https URL",
        with_image("http://example.com/a.png"),
        400,
        "messages.0.content.0.url",
        "https: or a base64 data: URL",
    ),
    (
        "data URL not base64",
        with_image("data:image/png,rawbytes"),
        400,
        "messages.0.content.0.url",
        "data:<type>;base64,<data>",
    ),
    (
        "data URL of text",
        with_image("data:text/plain;base64,aGVsbG8="),
        400,
        "messages.0.content.0.url",
        "not an accepted image type",
    ),
    (
        "data URL claiming PNG holding text",
        with_image("data:image/png;base64,aGVsbG8="),
        400,
        "messages.0.content.0.url",
        "not a image/png image",
    ),
    (
        "data URL broken base64",
        with_image("data:image/png;base64,iVBOR!!"),
        400,
        "messages.0.content.0.url",
        "not valid base64",
    ),
    (
        "image too large",
        with_image(
            "data:image/png;base64,"
            + base64.b64encode(base64.b64decode(PNG) + b"\0" * 3000).decode()
        ),
        400,
        "messages.0.content.0.url",
        "exceeds 2048 bytes",
    ),
    (
        "too many images",
        {"messages": [{"role": "user", "content": [{"type": "image", "url": PNG_URL}] * 4}]},
        400,
        "messages.0.content.3",
        "at most 3 images",
    ),
    (
        "image in an assistant message",
        {"messages": [ASK, {"role": "assistant", "content": [{"type": "image", "url": PNG_URL}]}]},
        400,
        "messages.1.content.0",
        "only user messages",
    ),
    (
        "reasoning effort and budget",
        {"messages": [ASK], "reasoning": {"effort": "low", "budget_tokens": 2000}},
        400,
        "reasoning",
        "one of them",
    ),
    (
        "reasoning options empty",
        {"messages": [ASK], "reasoning": {}},
        400,
        "reasoning",
        "one of them",
    ),
    (
        "reasoning on a user message",
        {"messages": [{**ASK, "reasoning": [{"type": "thinking", "text": "x"}]}]},
        400,
        "messages.0.reasoning",
        "only assistant",
    ),
    (
        "tool calls on a user message",
        {"messages": [{**ASK, "tool_calls": [CALL]}]},
        400,
        "messages.0.tool_calls",
        "only assistant",
    ),
    (
        "empty user message",
        {"messages": [{"role": "user", "content": []}]},
        400,
        "messages.0.content",
        "needs content",
    ),
    # Of the wrong type, though pydantic would read it as one: a 422.
    ("temperature a boolean", {"messages": [ASK], "temperature": False}, 422, "temperature", ""),
    ("max_tokens a string", {"messages": [ASK], "max_tokens": "5"}, 422, "max_tokens", ""),
]


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_bad_content_is_a_4xx_naming_the_field(
    serve: Serve,
    client: httpx.AsyncClient,
    body: dict[str, Any],
    status: int,
    field: str,
    words: str,
) -> None:
    url = serve(create_app(Settings(max_images=3, max_image_bytes=2048)))
    response = await client.post(f"{url}/chat/stream", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if status == 400:
        assert error["param"] == field
    else:  # pydantic's shape errors: the field is in the location of one detail
        assert any(
            ".".join(map(str, d["loc"][1:])).startswith(field) for d in response.json()["detail"]
        ), response.json()["detail"]
    assert words in error["message"], error["message"]


@pytest.mark.parametrize(
    ("content", "message", "unreadable"),
    [
        (b'{"messages": "\xff"}', "not valid UTF-8 (invalid start byte at byte 14)", True),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply", True),
        (
            b'{"max_tokens": ' + b"1" * 5000 + b"}",
            "an integer too large to be read (more than 4300 digits)",
            True,
        ),
        (
            b'{"messages": [{"role": "user" "content": "x"}]}',
            "the body is not valid JSON: Expecting ',' delimiter at character 30 (counting from 0)",
            False,
        ),
        (b"", "the body is empty", False),
        (b"[1, 2]", "must be a JSON object", False),
    ],
    ids=[
        "not UTF-8",
        "nested too deeply",
        "a 5,000-digit integer",
        "JSON syntax",
        "empty",
        "not an object",
    ],
)
async def test_a_body_that_is_not_json_says_what_to_do(
    serve: Serve, client: httpx.AsyncClient, content: bytes, message: str, unreadable: bool
) -> None:
    url = serve(create_app(Settings()))
    json = {"content-type": "application/json"}
    response = await client.post(f"{url}/chat/stream", content=content, headers=json)
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]
    # The OpenAI API answers the same in OpenAI's shape, as a 400; but a 422 there too for a
    # body json.loads cannot read at all (the schema's "4XX" covers it).
    response = await client.post(f"{url}/v1/chat/completions", content=content, headers=json)
    assert response.status_code == (422 if unreadable else 400)
    assert message in response.json()["error"]["message"]
    assert {"message", "type", "param", "code"} <= response.json()["error"].keys()


SURROGATE_CASES = [
    ({"messages": [{"role": "user", "content": "a\ud800b"}]}, "messages.0.content.0"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
        "messages.0.content.0",
    ),
    ({"messages": [ASK], "stop": ["\ud83d"]}, "stop.0"),
    (
        {"messages": [ASK], "tools": [{"name": "t", "description": "\udc00"}]},
        "tools.0",
    ),
]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
@pytest.mark.parametrize(("body", "param"), SURROGATE_CASES)
async def test_a_lone_surrogate_is_a_400_for_every_provider_not_a_500(
    serve: Serve,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    body: dict[str, Any],
    param: str,
) -> None:
    from tests.fakes.upstream import Reply, Upstream
    from tests.integration.test_tools_and_reasoning import settings_for

    with Upstream(Reply()) as up:
        url = serve(create_app(settings_for(provider, up.url)))
        # json.dumps escapes the surrogate as \\ud800: valid JSON, as a client would send it.
        response = await client.post(
            f"{url}/chat/stream",
            content=json.dumps({**body, "provider": provider}),
            headers={"content-type": "application/json"},
        )
    # A 400 from streamfn's own check, or a 422 where pydantic's string check comes first: a
    # 4xx naming the field either way.
    assert response.status_code in (400, 422), response.text
    error = response.json()["error"]
    assert error["param"].startswith(param)
    assert "surrogate" in error["message"] or "unicode" in error["message"]
    assert up.requests == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_too_many_messages_or_characters(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(create_app(Settings(max_messages=3, max_input_chars=100)))
    many = {"messages": [ASK] * 4}
    response = await client.post(f"{url}/chat/stream", json=many)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    assert "STREAMFN_MAX_MESSAGES" in response.json()["error"]["message"]
    long = {"messages": [{"role": "user", "content": "x" * 101}]}
    response = await client.post(f"{url}/chat/stream", json=long)
    assert response.status_code == 400
    assert "101 characters; at most 100 (STREAMFN_MAX_INPUT_CHARS)" in response.text


@pytest.mark.parametrize("path", ["/chat/stream", "/v1/chat/completions"])
def test_an_oversized_body_is_a_413_even_for_clients_that_send_it_all_first(
    serve: Serve, path: str
) -> None:
    import urllib.error
    import urllib.request

    url = serve(create_app(Settings(max_body_bytes=1 << 20, usage_records=False)))
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "' + b"x" * (10 << 20)
    body += b'"}]}'
    # urllib sends the whole body (10 MB, with Content-Length) before it reads the response.
    request = urllib.request.Request(
        url + path, data=body, headers={"content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    assert "STREAMFN_MAX_BODY_BYTES" in caught.value.read().decode()

    # The same body chunked (no Content-Length): counted as it arrives.
    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1 << 16):
            yield body[i : i + (1 << 16)]

    response = httpx.post(
        url + path, content=chunks(), headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 413


def test_a_client_that_expects_100_continue_gets_the_413_without_sending(serve: Serve) -> None:
    import socket

    url = serve(create_app(Settings(max_body_bytes=1000, usage_records=False)))
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /chat/stream HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 5000000\r\nexpect: 100-continue\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
