"""Resumable streams through the function URL emulator, with the stream log in DynamoDB (moto's
server mode): the stream's producer runs in the invocation that started it; a resume is another
invocation, in another environment, that reads the log and follows it to its end page."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from httpx_sse import EventSource

from local.lambda_emulator import EmulatorThread
from tests.awslambda.test_streaming_runtime import chat
from tests.fakes.aws import Moto, create_streams_table
from tests.sse_client import Received

Start = Callable[..., EmulatorThread]
WORDS = " ".join(f"w{i}" for i in range(24))


def events_of(
    method: str, url: str, *, leave_after: int | None = None, **kwargs: object
) -> tuple[httpx.Response, list[Received]]:
    got: list[Received] = []
    with httpx.Client(timeout=30) as client, client.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        if response.status_code == 200:
            for sse in EventSource(response).iter_sse():
                got.append(Received(sse.event, sse.data, sse.id, sse.retry, time.monotonic()))
                if len(got) == leave_after:
                    break
    return response, got


def assert_whole(events: list[Received], id: str) -> None:
    assert [e.id for e in events] == [f"{id}:{n}" for n in range(1, len(events) + 1)]
    assert "".join(e.data for e in events if e.event == "token") == WORDS
    assert [e.event for e in events[-2:]] == ["usage", "done"]


@pytest.fixture
def fn(emulator: Start, moto: Moto) -> EmulatorThread:
    table = f"streams-{uuid.uuid4().hex[:8]}"
    create_streams_table(moto.dynamodb(), table)
    return emulator(
        concurrency=3,
        STREAMFN_ECHO_DELAY_MS="80",
        STREAMFN_STREAMS_TABLE=table,
        STREAMFN_USAGE_RECORDS="false",
        **moto.env,
    )


def test_mid_stream_a_resume_is_another_invocation_that_follows_the_log(
    fn: EmulatorThread,
) -> None:
    response, first = events_of("POST", f"{fn.url}/chat/stream", json=chat(WORDS), leave_after=3)
    id = response.headers["x-stream-id"]
    resumed, rest = events_of(
        "GET", f"{fn.url}/chat/stream/{id}", headers={"Last-Event-ID": first[-1].id}
    )
    assert resumed.status_code == 200
    assert_whole(first + rest, id)
    # The first environment was still producing: the resume ran in a second one.
    assert fn.record.runtime_starts == 2
    # After the end: the log replays the whole stream, and a client that has it all gets 204.
    _, again = events_of("GET", f"{fn.url}/chat/stream/{id}")
    assert [(e.id, e.data) for e in again] == [(e.id, e.data) for e in first + rest]
    done, _ = events_of(
        "GET", f"{fn.url}/chat/stream/{id}", headers={"Last-Event-ID": again[-1].id}
    )
    assert done.status_code == 204


def test_before_the_first_token_a_chosen_stream_id_resumes_from_the_start(
    fn: EmulatorThread,
) -> None:
    id = f"lambda-{uuid.uuid4().hex}"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fn.url}/chat/stream", json=chat(WORDS, stream_id=id), timeout=0.05)
    # Its head reaches the log with the journal's first batch, a tenth of a second in.
    deadline = time.monotonic() + 5
    while True:
        response, events = events_of("GET", f"{fn.url}/chat/stream/{id}")
        if response.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert response.status_code == 200
    assert_whole(events, id)


def test_a_stop_from_another_invocation_ends_the_stream(fn: EmulatorThread) -> None:
    # Long enough (16 s) that the stop, which may need a cold environment of its own, comes in
    # time even on a loaded machine; stopped, it ends long before.
    words = " ".join(f"w{i}" for i in range(200))
    response, first = events_of("POST", f"{fn.url}/chat/stream", json=chat(words), leave_after=2)
    id = response.headers["x-stream-id"]
    # Its head is in the log with the journal's first batch, a tenth of a second in.
    deadline = time.monotonic() + 5
    while (stopped := httpx.post(f"{fn.url}/chat/stream/{id}/stop", timeout=30)).status_code == 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert stopped.status_code == 202
    _, rest = events_of(
        "GET", f"{fn.url}/chat/stream/{id}", headers={"Last-Event-ID": first[-1].id}
    )
    assert rest[-1].event == "error"
    assert '"type":"stopped"' in rest[-1].data
    assert sum(e.event == "token" for e in first + rest) < 100
