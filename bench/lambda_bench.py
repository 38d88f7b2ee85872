"""`make bench`: the Lambda path's cold start, and its per-token cost against uvicorn's.

Figures are ratios and medians measured in one run: this machine is shared and noisy.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
os.environ["STREAMFN_ECHO_DELAY_MS"] = "0"
os.environ["STREAMFN_AUTH"] = "none"  # Lambda's default is api_key; this measures the runtime

from local.lambda_emulator import EmulatorThread  # noqa: E402
from streamfn.app import create_app  # noqa: E402
from streamfn.settings import Settings  # noqa: E402
from tests.conftest import ServerThread  # noqa: E402

WORDS = 2000
BODY = {"messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(WORDS))}]}


def stream_seconds(url: str) -> float:
    started = time.perf_counter()
    with httpx.stream("POST", f"{url}/chat/stream", json=BODY, timeout=60) as response:
        for _ in response.iter_bytes():
            pass
    return time.perf_counter() - started


def cold_start() -> float:
    """From starting functions/bootstrap to the first body byte of the first invocation."""
    with EmulatorThread() as fn:
        fn.call(fn.emulator.stop_runtime())
        first_byte: list[float] = []

        def client() -> None:
            body = {"messages": [{"role": "user", "content": "cold"}]}
            with httpx.stream("POST", f"{fn.url}/chat/stream", json=body, timeout=60) as r:
                for _ in r.iter_bytes():
                    first_byte.append(time.perf_counter())
                    break

        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(0.3)  # the request waits in the emulator for a runtime
        started = time.perf_counter()
        fn.call(fn.emulator.start_runtime())
        thread.join(60)
        return first_byte[0] - started


def main() -> None:
    colds = [cold_start() for _ in range(3)]
    with ServerThread(create_app(Settings(echo_delay_ms=0))) as server, EmulatorThread() as fn:
        stream_seconds(server.url), stream_seconds(fn.url)  # warm both
        uvicorn_runs = [stream_seconds(server.url) for _ in range(5)]
        lambda_runs = [stream_seconds(fn.url) for _ in range(5)]
    u, lam = statistics.median(uvicorn_runs), statistics.median(lambda_runs)
    cold_ms = statistics.median(colds) * 1000
    report = (
        f"cold start (bootstrap start -> first body byte), median of 3: {cold_ms:.0f} ms\n"
        f"per token, uvicorn: {u / WORDS * 1e6:.1f} us; Lambda path: {lam / WORDS * 1e6:.1f} us\n"
        f"Lambda/uvicorn per-token ratio: {lam / u:.2f}x ({WORDS} tokens, median of 5)\n"
    )
    sys.stdout.write(report)


if __name__ == "__main__":
    main()
