"""The streaming runtime end to end: HTTP client -> function URL emulator -> functions/bootstrap
(a child process running the Runtime API loop) -> the app, and back, as it streams."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from local.lambda_emulator import EmulatorThread
from tests.sse_client import Received

Start = Callable[..., EmulatorThread]
TEST_APP = "tests.awslambda.apps:app"


def sse(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[Received]]:
    events: list[Received] = []
    with (
        httpx.Client(timeout=30, headers=headers) as client,
        client.stream("POST", url, json=body) as response,
    ):
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            from httpx_sse import EventSource

            for event in EventSource(response).iter_sse():
                events.append(
                    Received(event.event, event.data, event.id, event.retry, time.monotonic())
                )
        else:
            response.read()
    return response, events


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_tokens_arrive_progressively_through_the_lambda_path(emulator: Start) -> None:
    fn = emulator(STREAMFN_ECHO_DELAY_MS="100")
    response, events = sse(f"{fn.url}/chat/stream", chat("one two three four five six"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    arrivals = [e.at for e in events if e.event == "token"]
    assert "".join(e.data for e in events if e.event == "token") == "one two three four five six"
    assert [e.event for e in events][-2:] == ["usage", "done"]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap > 0.05 for gap in gaps), gaps  # not buffered into one piece at the end
    assert arrivals[-1] - arrivals[0] > 0.4
    # On uvloop's event loop, which the layer ships: asyncio's own is several times the CPU.
    assert any("1 invocation(s) at once, on uvloop" in line for line in fn.record.logs)


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ({"messages": []}, 422, "invalid_request"),
        (chat("x", provider="nope"), 400, "unknown_provider"),
        (chat("x" * 3000), 413, "payload_too_large"),
    ],
)
def test_app_statuses_and_error_bodies_pass_through(
    emulator: Start, body: dict[str, Any], status: int, error_type: str
) -> None:
    fn = emulator(STREAMFN_MAX_BODY_BYTES="2000")
    response = httpx.post(f"{fn.url}/chat/stream", json=body, timeout=30)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == error_type


def test_cookies_query_strings_headers_and_cookies_out(emulator: Start) -> None:
    fn = emulator(STREAMFN_LAMBDA_APP=TEST_APP)
    response = httpx.post(
        f"{fn.url}/echo/a%20b/c?x=1&x=2&y=caf%C3%A9",
        content=b"{}",
        headers={"x-custom": "value", "content-type": "application/json"},
        cookies={"session": "abc", "theme": "dark"},
        timeout=30,
    )
    assert response.status_code == 201
    assert response.headers["x-echo"] == "yes"
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/echo/a b/c"
    assert seen["raw_path"] == "/echo/a%20b/c"
    assert seen["query"] == [["x", "1"], ["x", "2"], ["y", "café"]]
    assert seen["cookies"] == {"session": "abc", "theme": "dark"}
    assert seen["headers"]["x-custom"] == "value"
    assert seen["client"] == "127.0.0.1"
    assert seen["request_id"]
    # Each Set-Cookie travels in the prelude's `cookies` and reaches the client as its own header.
    assert sorted(response.headers.get_list("set-cookie")) == [
        "first=1; Path=/; SameSite=lax",
        "second=2; HttpOnly; Path=/; SameSite=lax",
    ]


def test_binary_body_arrives_base64_encoded_and_decoded(emulator: Start) -> None:
    fn = emulator(STREAMFN_LAMBDA_APP=TEST_APP)
    payload = bytes(range(256)) * 4
    response = httpx.post(
        f"{fn.url}/echo/bin",
        content=payload,
        headers={"content-type": "application/octet-stream"},
        timeout=30,
    )
    assert base64.b64decode(response.json()["body_b64"]) == payload


def test_empty_body_still_sends_the_prelude(emulator: Start) -> None:
    fn = emulator(STREAMFN_LAMBDA_APP=TEST_APP)
    response = httpx.get(f"{fn.url}/empty", timeout=30)
    assert response.status_code == 204
    assert response.headers["x-empty"] == "yes"
    # And through streamfn: EventSource's reconnect answered with 204 and no body.
    fn2 = emulator()
    reconnect = httpx.get(
        f"{fn2.url}/chat/stream", params={"prompt": "x"}, headers={"Last-Event-ID": "3"}, timeout=30
    )
    assert reconnect.status_code == 204


def test_failure_mid_stream_sends_the_apps_error_event_and_error_trailers(emulator: Start) -> None:
    fn = emulator(STREAMFN_LAMBDA_APP=TEST_APP)
    response = httpx.get(f"{fn.url}/fails-mid-stream", timeout=30)
    assert response.status_code == 200
    assert "event: error" in response.text
    [trailers] = fn.record.trailers.values()
    assert trailers["lambda-runtime-function-error-type"] == "Function.StreamError"
    error = json.loads(base64.b64decode(trailers["lambda-runtime-function-error-body"]))
    assert error["errorType"] == "Function.StreamError"
    assert error["errorMessage"] == "broke after the first bytes"


def test_exception_before_the_prelude_goes_to_the_error_endpoint(emulator: Start) -> None:
    fn = emulator(STREAMFN_LAMBDA_APP="tests.awslambda.apps:raises_before_response")
    response = httpx.get(f"{fn.url}/anything", timeout=30)
    assert response.status_code == 502
    [error] = fn.record.invocation_errors
    assert error["errorType"] == "Function.Unhandled"
    assert error["errorMessage"] == "failed before the prelude"
    assert fn.record.trailers == {}


def test_the_deadline_ends_the_stream_with_a_timeout_event(emulator: Start) -> None:
    fn = emulator(timeout_s=4, STREAMFN_ECHO_DELAY_MS="200")
    response, events = sse(f"{fn.url}/chat/stream", chat(" ".join(["word"] * 100)))
    assert response.status_code == 200
    assert events[-1].event == "error"
    error = json.loads(events[-1].data)
    assert error["type"] == "timeout"
    assert "deadline" in error["message"]
    # At least 2 s before the 4 s deadline, which runs from the invoke (the cold start before
    # it does not count), and every token whole.
    [invoked] = [at for at, call, _ in fn.record.calls if call == "next"]
    assert events[-1].at - invoked < 4 - 2 + 0.5
    assert all(e.data == ("word" if i == 0 else " word") for i, e in enumerate(events[:-1]))
    assert fn.record.runtime_starts == 1, "the invocation should not have timed out"


def test_ten_invocations_reuse_one_process_and_one_provider(emulator: Start) -> None:
    fn = emulator()
    for i in range(10):
        _, events = sse(f"{fn.url}/chat/stream", chat(f"call {i}"))
        assert "".join(e.data for e in events if e.event == "token") == f"call {i}"
    assert fn.record.runtime_starts == 1

    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in fn.record.logs if line.startswith("{")]
        return [line for line in lines if "level" in line]  # EMF metrics are JSON lines too

    # The account settles (and is logged) past the end of the response, before the runtime
    # asks for the next invocation; the log line reaches the emulator's pipe a moment later.
    deadline = time.monotonic() + 5
    while sum(e["message"] == "request ended" for e in logged()) < 10:
        assert time.monotonic() < deadline, "a request's end was never logged"
        time.sleep(0.02)
    logs = logged()
    nexts = [c for c in fn.record.calls if c[1] == "next"]
    assert len(nexts) == 10
    assert [entry["message"] for entry in logs].count("provider echo ready") == 1
    # JSON lines from Powertools; from the first invocation on, each carries its request id.
    first = next(i for i, entry in enumerate(logs) if "request_id" in entry)
    assert all(entry.get("request_id") for entry in logs[first:])
    assert len([e for e in logs if e["message"] == "request ended"]) == 10
    assert all(entry["service"] == "streamfn" for entry in logs)


def test_import_error_goes_to_init_error(emulator: Start) -> None:
    fn = emulator(STREAMFN_LAMBDA_APP="tests.awslambda.no_such_module:app")
    response = httpx.get(f"{fn.url}/chat/stream?prompt=x", timeout=30)
    assert response.status_code == 502
    [error] = fn.record.init_errors
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module" in error["errorMessage"]
