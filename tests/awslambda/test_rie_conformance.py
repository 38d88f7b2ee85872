"""A second opinion from AWS's own Runtime Interface Emulator (shipped inside the aws-sam-cli
wheel): it must accept every request the streaming runtime makes. It returns the streamed body
at once and drops trailers, so streaming itself is tested through local/lambda_emulator.py."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.waiting import free_port, wait_for_port

ROOT = Path(__file__).parents[2]
ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
RIES = sorted(
    (ROOT / ".tools" / "sam").glob(
        f"lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-{ARCH}"
    )
)
EVENTS = ROOT / "tests" / "events"
Start = Callable[..., str]  # rie(**env) -> invocation URL


@pytest.fixture
def rie() -> Iterator[Start]:
    if not RIES:
        if os.environ.get("CI"):
            pytest.fail("AWS's RIE is missing: `make test` installs aws-sam-cli into .tools/sam")
        pytest.skip("AWS's RIE is not installed (make test installs aws-sam-cli into .tools/sam)")
    binary = RIES[0]
    binary.chmod(0o755)
    started: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> str:
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFN_")}
        full_env |= {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "STREAMFN_AUTH": "none",  # Lambda's default is api_key; this is about the runtime
            **env,
        }
        # Both addresses on loopback: without them the RIE listens on every interface.
        proc = subprocess.Popen(
            [
                str(binary),
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{port}",
                "--runtime-api-address",
                f"127.0.0.1:{free_port()}",
                str(ROOT / "functions" / "bootstrap"),
            ],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        wait_for_port(port, "the RIE")
        return f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(5)


def streamed(url: str, event_file: str) -> tuple[dict[str, Any], bytes]:
    """Invoke through the RIE; the prelude and the body after its eight NUL bytes."""
    body = httpx.post(url, content=(EVENTS / event_file).read_bytes(), timeout=30).content
    prelude, delimiter, sse = body.partition(b"\0" * 8)
    assert delimiter == b"\0" * 8
    return json.loads(prelude), sse


def test_rie_accepts_a_streamed_response(rie: Start) -> None:
    prelude, sse = streamed(rie(STREAMFN_ECHO_DELAY_MS="0"), "function_url_v2.json")
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["content-type"].startswith("text/event-stream")
    assert b"data: Buffered\n" in sse
    assert sse.endswith(b"event: done\ndata: stop\n\n")


def test_rie_accepts_an_error_before_the_prelude(rie: Start) -> None:
    url = rie(STREAMFN_LAMBDA_APP="tests.awslambda.apps:raises_before_response")
    event = (EVENTS / "function_url_v2.json").read_bytes()
    error = httpx.post(url, content=event, timeout=30).json()
    assert error["errorType"] == "Function.Unhandled"
    assert error["errorMessage"] == "failed before the prelude"


def test_rest_api_payload_1_streams_with_the_same_framing(rie: Start) -> None:
    prelude, sse = streamed(rie(STREAMFN_ECHO_DELAY_MS="0"), "rest_api_v1.json")
    assert prelude["statusCode"] == 200
    assert b"data: over\n" in sse
    assert b"data:  REST\n" in sse
    assert sse.endswith(b"event: done\ndata: stop\n\n")  # two words within max_tokens 2
