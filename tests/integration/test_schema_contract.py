"""The OpenAPI document is the contract (issue #22): what schemathesis found the server doing
that the document did not say, each case pinned here (tests/fuzz checks the rest at volume)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings

Serve = Callable[[ASGIApp], str]

ASK = [{"role": "user", "content": "hi"}]
BODIES: dict[str, dict[str, Any]] = {
    "/chat/stream": {"messages": ASK},
    "/v1/chat/completions": {"model": "echo", "messages": ASK},
    "/api/chat": {"messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]},
}
SPENDING = [
    ("/chat/stream", "post"),
    ("/chat/stream", "get"),
    ("/chat/stream/token", "post"),
    ("/chat/stream/{id}", "get"),
    ("/chat/stream/{id}/stop", "post"),
    ("/v1/chat/completions", "post"),
    ("/v1/models", "get"),
    ("/api/chat", "post"),
    ("/api/chat/{chat_id}/stream", "get"),
    ("/api/chat/{chat_id}/stop", "post"),
]


@pytest.fixture
def url(serve: Serve) -> str:
    return serve(create_app(Settings(usage_records=False, echo_delay_ms=0)))


async def test_every_refusal_is_documented(url: str, client: httpx.AsyncClient) -> None:
    document = (await client.get(f"{url}/openapi.json")).json()
    for path, method in SPENDING:
        statuses = set(document["paths"][path][method]["responses"])
        assert {"401", "403"} <= statuses, (path, method, statuses)
        if method == "post":
            assert {"413", "415"} <= statuses, (path, statuses)
    for method in ("get", "post"):
        assert "409" in document["paths"]["/chat/stream"][method]["responses"]  # stream_id taken


@pytest.mark.parametrize(
    ("path", "method", "events"),
    [
        ("/chat/stream", "post", {"token", "usage", "done", "error", "tool_call"}),
        ("/chat/stream/{id}", "get", {"token", "done"}),
        ("/v1/chat/completions", "post", {"message"}),
        ("/api/chat", "post", {"message"}),
    ],
)
async def test_a_stream_is_text_event_stream_of_described_events(
    url: str, client: httpx.AsyncClient, path: str, method: str, events: set[str]
) -> None:
    document = (await client.get(f"{url}/openapi.json")).json()
    content = document["paths"][path][method]["responses"]["200"]["content"]
    stream = content["text/event-stream"]
    event = stream["itemSchema"]
    assert stream["schema"] == {"type": "array", "items": event}
    assert {"event", "data", "id"} <= set(event["required"])
    assert events <= set(event["properties"]["event"]["enum"])


async def test_a_concrete_path_is_not_the_templated_one(
    url: str, client: httpx.AsyncClient
) -> None:
    options = await client.options(f"{url}/chat/stream/token")
    assert (options.status_code, options.headers["allow"]) == (204, "OPTIONS, POST")
    get = await client.get(f"{url}/chat/stream/token")
    assert (get.status_code, get.headers["allow"]) == (405, "OPTIONS, POST")
    assert get.json()["error"]["type"] == "method_not_allowed"
    # The templated path keeps its own.
    options = await client.options(f"{url}/chat/stream/some-stream-id")
    assert options.headers["allow"] == "GET, OPTIONS"


async def test_a_method_no_route_takes_is_a_405_before_the_gate(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = serve(create_app(Settings(auth="api_key", keys_db=tmp_path / "keys.sqlite3")))
    response = await client.request("TRACE", f"{url}/chat/stream")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, OPTIONS, POST")
    response = await client.delete(f"{url}/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"  # in OpenAI's shape
    assert (await client.post(f"{url}/chat/stream", json=BODIES["/chat/stream"])).status_code == 401


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", False),
        ("temperature", "0.5"),
        ("top_p", True),
        ("max_tokens", True),
        ("max_tokens", "5"),
        ("max_tokens", 5.5),
    ],
)
async def test_a_number_is_a_number(
    url: str, client: httpx.AsyncClient, path: str, field: str, value: object
) -> None:
    response = await client.post(f"{url}{path}", json={**BODIES[path], field: value})
    assert response.status_code in (400, 422), response.text  # OpenAI's malformed body: a 400
    assert field in response.json()["error"]["message"]


@pytest.mark.parametrize("path", list(BODIES))
async def test_an_integral_float_is_an_integer_as_json_schema_says(
    url: str, client: httpx.AsyncClient, path: str
) -> None:
    body = {**BODIES[path], "max_tokens": 5.0, "temperature": 1}
    response = await client.post(f"{url}{path}", json=body)
    assert response.status_code == 200, response.text
