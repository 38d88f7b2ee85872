"""No key, and no internal address, leaks: every provider through every fault a fake upstream can
produce, with a marker key that the upstream even echoes back in its own error text; every byte
the client receives and every log line (tracebacks included) is scanned."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes.bedrock import BEDROCK
from tests.fakes.upstream import Action, Reply, Upstream
from tests.fakes.wire import SECRET, WIRES, Wire
from tests.waiting import free_port

Serve = Callable[[ASGIApp], str]


def faults(wire: Wire) -> dict[str, Reply]:
    """Replies that fail in every way the fake can, most of them quoting the key."""
    said = f"Incorrect API key provided: {SECRET}"
    json_type = "application/json"
    mid_error = (
        wire.mid_error.replace(b"Overloaded", said.encode())
        .replace(b"The server had an error", said.encode())
        .replace(b"an error was encountered while running the model", said.encode())
    )
    return {
        "401 quoting the key": Reply(401, [wire.status_error(said)], content_type=json_type),
        "429 quoting the key": Reply(429, [wire.status_error(said)], content_type=json_type),
        "500 quoting the key": Reply(500, [wire.status_error(said)], content_type=json_type),
        "500 not JSON": Reply(500, [f"<html>{said}</html>".encode()], content_type="text/html"),
        "error event quoting the key": Reply(
            body=[*wire.head, wire.token("a"), mid_error], content_type=wire.content_type
        ),
        "malformed line holding the key": Reply(
            body=[*wire.head, wire.token("a"), b"data: {" + SECRET.encode() + b"\n\n"]
            if wire.name != "ollama"
            else [wire.token("a"), b"{" + SECRET.encode() + b"\n"],
            content_type=wire.content_type,
        ),
        "reset": Reply(
            body=[*wire.head, wire.token("a"), Action.RESET], content_type=wire.content_type
        ),
        "closed": Reply(
            body=[*wire.head, wire.token("a"), Action.CLOSE], content_type=wire.content_type
        ),
        "ended unfinished": Reply(
            body=[*wire.head, wire.token("a"), Action.END], content_type=wire.content_type
        ),
        "first token too late": Reply(body=[*wire.head, 3.0], content_type=wire.content_type),
    }


WIRES_AND_BEDROCK = [*WIRES, BEDROCK]
CASES = [(wire, name) for wire in WIRES_AND_BEDROCK for name in faults(wire)]


def scan(response: httpx.Response, logs: list[logging.LogRecord], upstream: str) -> None:
    received = "".join(f"{k}: {v}\n" for k, v in response.headers.items()) + response.text
    assert SECRET not in received
    assert upstream not in received, "the client was shown the internal upstream address"
    for record in logs:
        text = record.getMessage() + (record.exc_text or "") + str(record.__dict__)
        assert SECRET not in text, f"the key is in a log line: {text[:300]}"


@pytest.mark.parametrize(("wire", "fault"), CASES, ids=[f"{w.name}: {f}" for w, f in CASES])
async def test_no_fault_leaks_the_key_or_the_upstream_address(
    serve: Serve,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    wire: Wire,
    fault: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    with Upstream(faults(wire)[fault]) as up:
        settings = Settings(**wire.settings(up.url), first_token_timeout_s=0.5, usage_records=True)
        url = serve(create_app(settings))
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": "hi"}],
            "provider": wire.name,
        }
        response = await client.post(f"{url}/chat/stream", json=body)
        providers = await client.get(f"{url}/providers")
    assert response.status_code != 200 or "event: error" in response.text
    scan(response, caplog.records, f"127.0.0.1:{up.port}")
    scan(providers, [], f"127.0.0.1:{up.port}")


@pytest.mark.parametrize("wire", WIRES_AND_BEDROCK, ids=[w.name for w in WIRES_AND_BEDROCK])
async def test_an_unreachable_upstream_is_not_named_to_the_client(
    serve: Serve, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, wire: Wire
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    url = serve(create_app(Settings(**wire.settings(f"http://127.0.0.1:{port}"))))
    body = {"messages": [{"role": "user", "content": "hi"}], "provider": wire.name}
    response = await client.post(f"{url}/chat/stream", json=body)
    assert response.status_code == 502
    scan(response, caplog.records, f"127.0.0.1:{port}")
