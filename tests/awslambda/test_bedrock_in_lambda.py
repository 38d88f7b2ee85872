"""Bedrock from inside Lambda, with nothing configured but what Lambda itself gives a function:
its region and its role's credentials in the environment. Through the function URL emulator
and functions/bootstrap, to the fake Bedrock runtime, which checks the SigV4 signature."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from httpx_sse import EventSource

from local.lambda_emulator import EmulatorThread
from tests.fakes import bedrock as fake
from tests.fakes.upstream import Upstream

Start = Callable[..., EmulatorThread]


def test_bedrock_is_there_in_lambda_with_the_functions_role(
    emulator: Start, tmp_path: Path
) -> None:
    with Upstream(fake.FakeBedrock(fake.text_stream(["From", " the", " role"]))) as up:
        fn = emulator(
            # What Lambda sets: the region, and the execution role's temporary credentials.
            AWS_REGION=fake.REGION,
            AWS_ACCESS_KEY_ID=fake.ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=fake.SECRET_KEY,
            AWS_SESSION_TOKEN=fake.SESSION_TOKEN,
            # Where the test's Bedrock is, and nothing of this machine's AWS setup.
            AWS_ENDPOINT_URL_BEDROCK_RUNTIME=up.url,
            AWS_CONFIG_FILE=str(tmp_path / "none"),
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PROFILE=None,  # type: ignore[arg-type]
        )
        with httpx.Client(timeout=30) as client:
            providers = client.get(f"{fn.url}/providers").json()["providers"]
            assert "bedrock" in [p["name"] for p in providers]
            body = {
                "messages": [{"role": "user", "content": "hi"}],
                "provider": "bedrock",
                "model": fake.MODEL,
            }
            started = time.monotonic()
            with client.stream("POST", f"{fn.url}/chat/stream", json=body) as response:
                assert response.status_code == 200
                events = [(e.event, e.data) for e in EventSource(response).iter_sse()]
    assert "".join(d for e, d in events if e == "token") == "From the role"
    assert events[-1] == ("done", "stop")
    assert json.loads(events[-2][1])["output_tokens"] == 3
    assert time.monotonic() - started < 10
    runtime = up.replies[0]
    assert isinstance(runtime, fake.FakeBedrock)
    assert runtime.refused == []
    [request] = up.requests
    assert f"/{fake.REGION}/bedrock/aws4_request" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == fake.SESSION_TOKEN
