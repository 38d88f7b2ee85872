"""Provider keys read at init from SSM Parameter Store and Secrets Manager (moto on loopback),
then used against fake provider upstreams, all through the function URL emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx

from local.lambda_emulator import EmulatorThread
from tests.awslambda.test_streaming_runtime import chat, sse
from tests.fakes.aws import Moto
from tests.fakes.upstream import Reply, Upstream
from tests.fakes.wire import anthropic_stream, openai_stream

Start = Callable[..., EmulatorThread]


def test_keys_from_ssm_and_secrets_manager_reach_the_providers(emulator: Start, moto: Moto) -> None:
    openai_key, anthropic_key = f"sk-ssm-{uuid.uuid4().hex}", f"sk-ant-{uuid.uuid4().hex}"
    parameter = f"/streamfn/{uuid.uuid4().hex[:8]}/openai-api-key"
    moto.client("ssm").put_parameter(Name=parameter, Value=openai_key, Type="SecureString")
    secret_arn = moto.client("secretsmanager").create_secret(
        Name=f"streamfn-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"ANTHROPIC_API_KEY": anthropic_key}),
    )["ARN"]
    with (
        Upstream(Reply(body=openai_stream(["from", " openai"]))) as openai,
        Upstream(Reply(body=anthropic_stream(["from", " anthropic"]))) as anthropic,
    ):
        fn = emulator(
            **moto.env,
            OPENAI_API_KEY_SSM_PARAMETER=parameter,
            OPENAI_BASE_URL=f"{openai.url}/v1",
            ANTHROPIC_API_KEY_SECRET_ARN=secret_arn,
            ANTHROPIC_BASE_URL=anthropic.url,
        )
        _, events = sse(f"{fn.url}/chat/stream", chat("hi", provider="openai"))
        assert "".join(e.data for e in events if e.event == "token") == "from openai"
        _, events = sse(f"{fn.url}/chat/stream", chat("hi", provider="anthropic"))
        assert "".join(e.data for e in events if e.event == "token") == "from anthropic"
    assert openai.requests[0].headers["authorization"] == f"Bearer {openai_key}"
    headers = anthropic.requests[0].headers  # the SDK sends the key one way or the other
    assert anthropic_key in headers.get("x-api-key", "") + headers.get("authorization", "")
    # The keys never reach the logs; the names of where they came from do.
    logs = "\n".join(fn.record.logs)
    assert openai_key not in logs
    assert anthropic_key not in logs
    assert f"OPENAI_API_KEY read from {parameter}" in logs
    # One line per request, streamfn's own: not httpx2's per upstream request as well.
    assert "request ended" in logs
    assert "HTTP Request:" not in logs


def test_a_missing_parameter_fails_init_naming_it(emulator: Start, moto: Moto) -> None:
    fn = emulator(**moto.env, OPENAI_API_KEY_SSM_PARAMETER="/streamfn/not-there")
    response = httpx.get(f"{fn.url}/chat/stream?prompt=x", timeout=30)
    assert response.status_code == 502
    [error] = fn.record.init_errors
    assert error["errorType"] == "Runtime.InitError"
    assert "cannot read OPENAI_API_KEY from /streamfn/not-there" in error["errorMessage"]
    assert "ParameterNotFound" in error["errorMessage"]


def test_a_binary_secret_holds_the_key_as_text(emulator: Start, moto: Moto) -> None:
    key = f"sk-bin-{uuid.uuid4().hex}"
    secret_arn = moto.client("secretsmanager").create_secret(
        Name=f"streamfn-{uuid.uuid4().hex[:8]}", SecretBinary=key.encode()
    )["ARN"]
    with Upstream(Reply(body=openai_stream(["binary"]))) as openai:
        fn = emulator(
            **moto.env, OPENAI_API_KEY_SECRET_ARN=secret_arn, OPENAI_BASE_URL=f"{openai.url}/v1"
        )
        _, events = sse(f"{fn.url}/chat/stream", chat("hi", provider="openai"))
        assert "".join(e.data for e in events if e.event == "token") == "binary"
    assert openai.requests[0].headers["authorization"] == f"Bearer {key}"
