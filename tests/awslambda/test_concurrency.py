"""The emulator as a function URL under load: one invocation per environment, a new runtime
process for a request that finds them all busy, up to the reserved concurrency, and 429 beyond
it without invoking the function; idle environments are reused."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from local.lambda_emulator import EmulatorThread
from local.url_cors import reserved_concurrency
from tests.awslambda.test_streaming_runtime import chat

Start = Callable[..., EmulatorThread]
WORDS = " ".join(f"w{i}" for i in range(20))


def timed_stream(url: str, out: dict[str, Any]) -> None:
    """Each token's arrival time, and the status."""
    times: list[float] = []
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{url}/chat/stream", json=chat(WORDS)) as response,
    ):
        out["status"] = response.status_code
        for line in response.iter_lines():
            if line == "event: token":
                times.append(time.monotonic())
    out["times"] = times


def in_threads(url: str, n: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in range(n)]
    threads = [threading.Thread(target=timed_stream, args=(url, r)) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_concurrent_streams_each_get_an_environment_and_progress_together(
    emulator: Start,
) -> None:
    fn = emulator(concurrency=3, STREAMFN_ECHO_DELAY_MS="100")
    first = in_threads(fn.url, 3)
    assert [r["status"] for r in first] == [200, 200, 200]
    assert fn.record.runtime_starts == 3  # one per concurrent request
    # Warm now: the same three serve three more at once, no new process, no cold start.
    again = in_threads(fn.url, 3)
    assert [r["status"] for r in again] == [200, 200, 200]
    assert all(len(r["times"]) == 20 for r in again)
    assert fn.record.runtime_starts == 3
    # Progressing at once, not one after another: every stream had its first token before any
    # stream had its last.
    assert max(r["times"][0] for r in again) < min(r["times"][-1] for r in again)


def test_beyond_the_reserved_concurrency_a_request_is_throttled(emulator: Start) -> None:
    fn = emulator(concurrency=2, STREAMFN_ECHO_DELAY_MS="200")
    results: list[dict[str, Any]] = [{}, {}]
    threads = [threading.Thread(target=timed_stream, args=(fn.url, r)) for r in results]
    for thread in threads:
        thread.start()
    fn.wait_for("next", count=2)  # both invoked
    throttled = httpx.post(f"{fn.url}/chat/stream", json=chat("one more"), timeout=30)
    assert throttled.status_code == 429
    assert throttled.json() == {"Message": "Rate Exceeded."}
    assert throttled.headers["x-amzn-errortype"] == "TooManyRequestsException"
    for thread in threads:
        thread.join(60)
    assert [r["status"] for r in results] == [200, 200]
    assert sum(c[1] == "next" for c in fn.record.calls) == 2  # the throttled one never ran
    assert fn.record.throttled == 1


def test_the_default_concurrency_is_the_templates_reserved_concurrency() -> None:
    assert reserved_concurrency() == 10  # template.yaml's ReservedConcurrency default
    assert reserved_concurrency(parameters={"ReservedConcurrency": "3"}) == 3
