"""The DynamoDB usage store against moto's server on loopback (real boto3, real HTTP)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes.aws import Moto, create_usage_table
from tests.sse_client import stream, user

Serve = Callable[[ASGIApp], str]


async def test_records_reach_the_table_with_ttl_and_day(
    serve: Serve,
    client: httpx.AsyncClient,
    moto: Moto,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    table = f"usage-{uuid.uuid4().hex[:8]}"
    dynamodb = moto.dynamodb()
    create_usage_table(dynamodb, table)
    url = serve(create_app(Settings(echo_delay_ms=0, usage_table=table, usage_ttl_days=7)))
    response, _ = await stream(client, f"{url}/chat/stream", user("to the table"))
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 10
    # Settled: the record as opened (outcome interrupted) is replaced after the stream ends.
    while (
        item := dynamodb.get_item(TableName=table, Key={"request_id": {"S": request_id}}).get(
            "Item"
        )
        or {}
    ).get("outcome") != {"S": "finished"}:
        assert time.monotonic() < deadline, "the record never reached DynamoDB"
        await asyncio.sleep(0.05)
    assert item["provider"] == {"S": "echo"}
    assert item["outcome"] == {"S": "finished"}
    assert item["output_tokens"] == {"N": "3"}
    assert item["usage_estimated"] == {"BOOL": False}
    assert item["client_disconnected"] == {"BOOL": False}
    assert "error_type" not in item  # absent rather than NULL
    started = float(item["started_at"]["N"])
    assert abs(started - time.time()) < 60
    assert int(item["expires_at"]["N"]) == int(started) + 7 * 86400
    assert item["day"]["S"] == time.strftime("%Y-%m-%d", time.gmtime(started))


async def test_a_missing_table_is_logged_not_raised(
    serve: Serve,
    client: httpx.AsyncClient,
    moto: Moto,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    url = serve(create_app(Settings(echo_delay_ms=0, usage_table="no-such-table")))
    with caplog.at_level("ERROR", logger="streamfn"):
        _, events = await stream(client, f"{url}/chat/stream", user("fine anyway"))
        assert events[-1].event == "done"
        deadline = time.monotonic() + 10
        while not any(r.message == "usage record not stored" for r in caplog.records):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    [failure] = [r for r in caplog.records if r.message == "usage record not stored"]
    assert "ResourceNotFoundException" in repr(failure.exc_info)
