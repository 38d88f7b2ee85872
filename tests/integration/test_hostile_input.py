"""Control characters in a field that can reach a header, a log key or an upstream URL (issue
#22: a line feed in `model` went raw into X-Streamfn-Served-By, uvicorn refused the header and
the client got an empty reply after the provider had been called). Each is a 400 naming the
field, on every route, before any provider is called; through a real uvicorn server, which is
what refused the header."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import Finish, TextDelta, Usage
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.providers import Observed, Scripted, spec

Serve = Callable[[ASGIApp], str]

ASK = {"role": "user", "content": "hi"}
CALL = {"id": "call_1", "name": "get_time", "arguments": "{}"}
TOOL = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
# A body with every field of interest, a clean value in each: a case puts the control
# character into one of them.
NATIVE: dict[str, Any] = {
    "model": "echo",
    "provider": "echo",
    "fallbacks": ["echo/echo"],
    "stream_id": f"stream-{uuid.uuid4().hex}",  # the log outlives the test's server
    "messages": [
        ASK,
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ],
    "tools": [TOOL],
    "tool_choice": {"name": "get_time"},
}
OPENAI: dict[str, Any] = {
    "model": "echo",
    "models": ["echo/echo"],
    "messages": [
        ASK,
        {
            "role": "assistant",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_time"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ],
    "tools": [{"type": "function", "function": TOOL}],
    "tool_choice": {"type": "function", "function": {"name": "get_time"}},
}
AISDK: dict[str, Any] = {
    "id": "chat-1",
    "messageId": "msg-1",
    "model": "echo",
    "provider": "echo",
    "fallbacks": ["echo/echo"],
    "messages": [
        {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]},
        {
            "id": "m2",
            "role": "assistant",
            "parts": [
                {
                    "type": "tool-get_time",
                    "toolCallId": "call_1",
                    "state": "output-available",
                    "input": {},
                    "output": "noon",
                },
                {
                    "type": "dynamic-tool",
                    "toolName": "get_time",
                    "toolCallId": "call_2",
                    "state": "output-available",
                    "input": {},
                    "output": "noon",
                },
            ],
        },
    ],
}


def put(body: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    """A deep copy of `body` with `value` at the dotted path `field`."""
    out = copy.deepcopy(body)
    *path, last = field.split(".")
    at: Any = out
    for key in path:
        at = at[int(key)] if isinstance(at, list) else at[key]
    at[int(last) if isinstance(at, list) else last] = value
    return out


BODIES = {"/chat/stream": NATIVE, "/v1/chat/completions": OPENAI, "/api/chat": AISDK}
FIELDS = [
    ("/chat/stream", "model"),
    ("/chat/stream", "provider"),
    ("/chat/stream", "fallbacks.0"),
    ("/chat/stream", "stream_id"),
    ("/chat/stream", "messages.1.tool_calls.0.id"),
    ("/chat/stream", "messages.1.tool_calls.0.name"),
    ("/chat/stream", "messages.2.tool_call_id"),
    ("/chat/stream", "tools.0.name"),
    ("/chat/stream", "tool_choice.name"),
    ("/v1/chat/completions", "model"),
    ("/v1/chat/completions", "models.0"),
    ("/v1/chat/completions", "messages.1.tool_calls.0.id"),
    ("/v1/chat/completions", "messages.1.tool_calls.0.function.name"),
    ("/v1/chat/completions", "messages.2.tool_call_id"),
    ("/v1/chat/completions", "tools.0.function.name"),
    ("/v1/chat/completions", "tool_choice.function.name"),
    ("/api/chat", "id"),
    ("/api/chat", "messageId"),
    ("/api/chat", "model"),
    ("/api/chat", "provider"),
    ("/api/chat", "fallbacks.0"),
    ("/api/chat", "messages.1.id"),
    ("/api/chat", "messages.1.parts.0.type"),
    ("/api/chat", "messages.1.parts.0.toolCallId"),
    ("/api/chat", "messages.1.parts.1.toolName"),
]
# CR, LF, both, NUL, ESC, DEL, and NEL (a C1 control that Latin-1 header encoding would pass).
CONTROLS = ["\n", "\r\n", "\r", "\x00", "\x1b", "\x7f", "\x85"]
CONTROL_IDS = ["LF", "CRLF", "CR", "NUL", "ESC", "DEL", "NEL"]


@pytest.fixture
def served(serve: Serve) -> tuple[str, Observed]:
    """A server whose one provider takes any model name, so that only the check stands
    between a hostile name and a header, and counts the streams it is asked for."""
    observed = Observed(EchoProvider(delay_s=0))
    app = create_app(Settings(usage_records=False), providers=[spec(observed)])
    return serve(app), observed


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error


async def test_the_clean_bodies_stream(
    served: tuple[str, Observed], client: httpx.AsyncClient
) -> None:
    url, observed = served
    for path, body in BODIES.items():
        body = {**body, "stream": True} if path.startswith("/v1/") else body
        response = await client.post(f"{url}{path}", json=body)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["x-streamfn-served-by"] == "echo/echo"
    assert observed.opened == 3


@pytest.mark.parametrize("char", CONTROLS, ids=CONTROL_IDS)
@pytest.mark.parametrize(("path", "field"), FIELDS, ids=[f"{p} {f}" for p, f in FIELDS])
async def test_a_control_character_is_a_400_naming_the_field_before_any_provider(
    served: tuple[str, Observed], client: httpx.AsyncClient, path: str, field: str, char: str
) -> None:
    url, observed = served
    body = put(BODIES[path], field, f"get{char}time")
    if path.startswith("/v1/"):
        body["stream"] = True
    response = await client.post(f"{url}{path}", json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == field
    assert f"{field} holds a control character (U+{ord(char[0]):04X}" in error["message"]
    assert "x-streamfn-served-by" not in response.headers
    assert observed.opened == 0


@pytest.mark.parametrize("field", ["model", "provider", "stream_id"])
async def test_the_get_route_refuses_them_too(
    served: tuple[str, Observed], client: httpx.AsyncClient, field: str
) -> None:
    url, observed = served
    params = {"prompt": "hi", field: "stream-0001\r\nx-injected: 1"}
    response = await client.get(f"{url}/chat/stream", params=params)
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == field
    assert "x-injected" not in response.headers
    assert observed.opened == 0


@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/chat/stream/{}", "id"),
        ("POST", "/chat/stream/{}/stop", "id"),
        ("GET", "/api/chat/{}/stream", "chat_id"),
        ("POST", "/api/chat/{}/stop", "chat_id"),
    ],
)
@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\x7f"])
async def test_an_id_in_a_path_with_one_is_a_400_not_a_500(
    served: tuple[str, Observed],
    client: httpx.AsyncClient,
    method: str,
    path: str,
    param: str,
    char: str,
) -> None:
    url, _ = served
    id = f"stream-{uuid.uuid4().hex}"
    response = await client.request(method, url + path.format(quote(f"{id}{char}")))
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["param"] == param
    assert "control character" in error["message"]
    # Without one, an id nobody started is a plain 404 (or 204 for the AI SDK's resume).
    response = await client.request(method, url + path.format(id))
    assert response.status_code in (404, 204), response.text


async def test_a_model_beyond_ascii_is_served_and_its_header_percent_encoded(
    serve: Callable[[Any], str], client: httpx.AsyncClient
) -> None:
    """Headers are Latin-1: a model named in another script used to fail the response after
    the provider was called; the one header check percent-encodes it."""
    scripted = Scripted(TextDelta("hi"), Finish("stop", Usage(1, 1)))
    url = serve(create_app(Settings(usage_records=False), providers=[spec(scripted)]))
    body = {"messages": [{"role": "user", "content": "hi"}], "model": "模型"}
    async with client.stream("POST", f"{url}/chat/stream", json=body) as response:
        text = (await response.aread()).decode()
    assert response.status_code == 200
    assert response.headers["x-streamfn-served-by"] == "echo/%E6%A8%A1%E5%9E%8B"
    assert text.endswith("event: done\ndata: stop\n\n")
