"""Per-identity limits through a real server: requests per minute, concurrent streams, tokens per
day (reserved, then settled to real usage); a key's own limits; 429 with Retry-After, before
any provider call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.keys import create_key
from tests.providers import Observed, spec
from tests.sse_client import stream, user

Serve = Callable[[ASGIApp], str]


async def post(client: httpx.AsyncClient, url: str, **body: Any) -> httpx.Response:
    response, _ = await stream(client, f"{url}/chat/stream", user("one two", **body))
    return response


async def test_requests_per_minute(serve: Serve, client: httpx.AsyncClient) -> None:
    observed = Observed(EchoProvider(delay_s=0))
    url = serve(
        create_app(Settings(requests_per_minute=2, usage_records=False), providers=[spec(observed)])
    )
    statuses = [(await post(client, url)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = await client.post(f"{url}/v1/chat/completions", json={"model": "echo", **user("x")})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limit"
    assert "made 2 requests this minute" in refused.json()["error"]["message"]


async def test_concurrent_streams(serve: Serve, client: httpx.AsyncClient) -> None:
    url = serve(create_app(Settings(concurrent_streams=1, echo_delay_ms=100, usage_records=False)))
    long = user(" ".join(["word"] * 20))  # 20 words, 100 ms apart: open for 2 s
    first = asyncio.create_task(stream(client, f"{url}/chat/stream", long))
    await asyncio.sleep(0.3)
    second = await client.post(f"{url}/chat/stream", json=user("x"))
    assert second.status_code == 429
    assert "has 1 streams open" in second.json()["error"]["message"]
    assert (await first)[0].status_code == 200
    # Its end released the hold (the account settles right after the last byte).
    for _ in range(50):
        if (third := await post(client, url)).status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert third.status_code == 200


async def test_tokens_per_day_are_reserved_then_settled(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(create_app(Settings(tokens_per_day=100, echo_delay_ms=0, usage_records=False)))
    # Reserves input (about 2) + max_tokens 90: over the 100 with anything else reserved.
    assert (await post(client, url, max_tokens=90)).status_code == 200
    # Settled to the real usage (2 in, 2 out), so there is room again.
    for _ in range(50):
        if (again := await post(client, url, max_tokens=90)).status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert again.status_code == 200
    refused = await client.post(f"{url}/chat/stream", json=user("x", max_tokens=99))
    assert refused.status_code == 429
    assert "would exceed 100 tokens today" in refused.json()["error"]["message"]


async def test_a_keys_own_limits_replace_the_defaults(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    strict, _ = create_key(tmp_path / "keys.sqlite3", limits={"requests_per_minute": 1})
    loose, _ = create_key(tmp_path / "keys.sqlite3")
    settings = Settings(
        auth="api_key",
        keys_db=tmp_path / "keys.sqlite3",
        requests_per_minute=3,
        usage_records=False,
        echo_delay_ms=0,
    )
    url = serve(create_app(settings))

    async def status(key: str) -> int:
        headers = {"authorization": f"Bearer {key}"}
        return (
            await client.post(f"{url}/chat/stream", json=user("x"), headers=headers)
        ).status_code

    assert [await status(strict) for _ in range(2)] == [200, 429]
    assert [await status(loose) for _ in range(4)] == [200, 200, 200, 429]  # its own count


async def test_a_key_limited_to_some_models_is_refused_the_others(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    echo_only, _ = create_key(tmp_path / "keys.sqlite3", limits={"models": ["echo/*"]})
    ollama_only, _ = create_key(tmp_path / "keys.sqlite3", limits={"models": ["ollama/*"]})
    settings = Settings(
        auth="api_key", keys_db=tmp_path / "keys.sqlite3", usage_records=False, echo_delay_ms=0
    )
    url = serve(create_app(settings))

    async def call(key: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"}
        body = {"model": "echo", "messages": user("x")["messages"]}
        return await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)

    assert (await call(echo_only)).status_code == 200
    refused = await call(ollama_only)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "this API key may not use echo/echo"
    assert refused.json()["error"]["param"] == "model"
