"""The buffered Mangum handler on real API Gateway v2 and function URL sample events."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).parents[1] / "events"


class Context:
    aws_request_id = "buffered-test"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:streamfn-buffered"
    function_name = "streamfn-buffered"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("STREAMFN_ECHO_DELAY_MS", "0")
    # As in Lambda (which serves any Host: its events carry the URL's own), with streamfn's
    # auth off: these tests are about the adapter.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "streamfn-buffered")
    monkeypatch.setenv("STREAMFN_AUTH", "none")
    monkeypatch.setenv("STREAMFN_USAGE_RECORDS", "false")
    from streamfn.awslambda import buffered

    monkeypatch.setattr(buffered, "_adapter", None)
    yield buffered.handler
    # Mangum sets up an event loop of its own for the process (right for Lambda); a test process
    # goes on, so close it here rather than leave it to the garbage collector.
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = policy.get_event_loop()
    loop.close()
    policy.set_event_loop(None)


def test_function_url_event_gets_the_whole_sse_body(handler: Any) -> None:
    response = handler(event("function_url_v2.json"), Context())
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"].startswith("text/event-stream")
    body = response["body"]
    assert "data: Buffered\n" in body
    assert "data:  whole\n" in body
    assert body.endswith("event: done\ndata: stop\n\n")


def test_http_api_event_for_an_ordinary_route(handler: Any) -> None:
    started = time.monotonic()
    response = handler(event("http_api_v2.json"), Context())
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok"}
    assert time.monotonic() - started < 5


def test_validation_error_through_the_buffered_handler(handler: Any) -> None:
    bad = event("function_url_v2.json")
    bad["body"], bad["isBase64Encoded"] = '{"messages": []}', False
    response = handler(bad, Context())
    assert response["statusCode"] == 422
    assert json.loads(response["body"])["error"]["type"] == "invalid_request"
