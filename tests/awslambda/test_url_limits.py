"""The function URL's quotas in the emulator: a request whose event exceeds the 6 MB
invocation payload is answered 413 by the URL and never reaches the function; a streamed
response past its first 6 MB is relayed at most 2 MB/s."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from local.lambda_emulator import CAPPED_RATE, UNCAPPED, EmulatorThread
from tests.awslambda.test_streaming_runtime import chat

Start = Callable[..., EmulatorThread]
MINIMAL_RUNTIME = Path(__file__).parents[2] / "bench" / "minimal_runtime" / "bootstrap"


def test_a_request_over_6_mb_is_refused_by_the_url(emulator: Start) -> None:
    fn = emulator()
    response = httpx.post(f"{fn.url}/chat/stream", json=chat("x" * (6 * 1024 * 1024)), timeout=60)
    assert response.status_code == 413
    assert "smaller than 6291456 bytes" in response.json()["Message"]
    assert not any(c[1] == "next" for c in fn.record.calls)  # the function never saw it
    assert fn.record.oversized == 1
    # Just under the quota, the function is invoked (and answers for itself).
    small = httpx.post(f"{fn.url}/chat/stream", json=chat("x" * 1000), timeout=60)
    assert small.status_code == 200


def test_past_6_mb_a_streamed_response_is_relayed_at_2_mb_per_second() -> None:
    extra = 2 * 1024 * 1024  # what goes out after the first 6 MB: about a second
    env = {"BODY_BYTES": str(UNCAPPED + extra)}
    with EmulatorThread(bootstrap=MINIMAL_RUNTIME, env=env) as fn:
        started = time.monotonic()
        with httpx.stream("GET", f"{fn.url}/", timeout=60) as response:
            received = sum(len(piece) for piece in response.iter_bytes())
        elapsed = time.monotonic() - started
    assert received == UNCAPPED + extra
    assert elapsed >= extra / CAPPED_RATE * 0.9  # capped: it cannot have gone faster
    assert fn.record.violations == []
