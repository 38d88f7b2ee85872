"""Authentication: safe defaults, API keys in every protocol's shape, nothing unauthenticated
reaching a provider (a fake upstream counts the calls), keys in SQLite and in DynamoDB."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.auth import keys
from streamfn.auth.stores import DynamoDBKeyStore, SqliteKeyStore
from streamfn.origins import CORS
from streamfn.settings import Settings
from tests.fakes import transcripts as t
from tests.fakes.aws import Moto, create_keys_table
from tests.fakes.upstream import Reply, Upstream
from tests.keys import create_key
from tests.sse_client import stream, text_of, user

Serve = Callable[[ASGIApp], str]
ASK = {"messages": [{"role": "user", "content": "hello there"}]}


def guarded(tmp_path: Path, **settings: Any) -> ASGIApp:
    return create_app(
        Settings(
            auth="api_key",
            keys_db=tmp_path / "keys.sqlite3",
            usage_db=tmp_path / "usage.sqlite3",
            echo_delay_ms=0,
            **settings,
        )
    )


@pytest.mark.parametrize(
    ("settings", "lambda_env", "modes"),
    [
        ({}, False, {"none"}),  # make run: loopback
        ({"host": "127.0.0.2"}, False, {"none"}),
        ({"host": "0.0.0.0"}, False, {"api_key"}),  # exposed
        ({"host": "::"}, False, {"api_key"}),
        ({}, True, {"api_key"}),  # Lambda
        ({"host": "0.0.0.0", "auth": "none"}, False, {"none"}),  # only when said
        ({"auth": "api_key"}, False, {"api_key"}),
    ],
)
def test_auth_is_on_by_default_anywhere_but_loopback(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], lambda_env: bool, modes: set[str]
) -> None:
    if lambda_env:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "streamfn")
    assert Settings(**settings).auth_modes() == modes


def test_auth_off_away_from_loopback_warns_at_every_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="streamfn.auth.gate"):
        create_app(Settings(host="0.0.0.0", auth="none", usage_records=False))
    assert "STREAMFN_AUTH=none on 0.0.0.0: anyone who can reach this server" in caplog.text


@pytest.mark.parametrize("value", ["basic", "none,api_key", ""])
def test_an_unknown_auth_mode_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValueError, match="STREAMFN_AUTH is none, api_key, jwt"):
        Settings(auth=value)


ROUTES = [
    ("POST", "/chat/stream", ASK, "native"),
    ("GET", "/chat/stream?prompt=hi", None, "native"),
    ("POST", "/api/chat", {"messages": [{"role": "user", "parts": []}]}, "native"),
    ("POST", "/v1/chat/completions", {"model": "openai", **ASK}, "openai"),
    ("GET", "/v1/models", None, "openai"),
]


@pytest.mark.parametrize(("method", "path", "body", "shape"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer sk-not-ours"},
        {"x-api-key": "sfn_000000000000_" + "A" * 43},  # well formed, no such key
        {"authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["none", "foreign", "unknown", "basic"],
)
async def test_no_valid_key_is_a_401_and_never_reaches_a_provider(
    serve: Serve,
    client: httpx.AsyncClient,
    tmp_path: Path,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    shape: str,
    headers: dict[str, str],
) -> None:
    with Upstream(Reply(body=list(t.OPENAI_ANSWER))) as up:
        url = serve(guarded(tmp_path, openai_api_key="sk-x", openai_base_url=f"{up.url}/v1"))
        # Even a malformed body is refused for its missing key first: nothing is parsed.
        response = await client.request(method, f"{url}{path}", json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="streamfn"'
    error = response.json()["error"]
    if shape == "openai":
        assert error["type"] == "authentication_error"
        assert error["code"] == "unauthorized"
    else:
        assert error["type"] == "unauthorized"
    assert up.requests == []


async def test_a_valid_key_as_bearer_or_x_api_key_is_let_through_and_recorded(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    key, record = create_key(tmp_path / "keys.sqlite3")
    url = serve(guarded(tmp_path))
    for headers in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
        client.headers.update(headers)
        response, events = await stream(client, f"{url}/chat/stream", ASK)
        client.headers.clear()
        assert response.status_code == 200
        assert text_of(events) == "hello there"
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
            made = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'usage'").fetchone()
            settled = "SELECT identity FROM usage WHERE status != 0"
            identities = [r[0] for r in db.execute(settled)] if made else []
        if len(identities) == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    # The key's id, never the key, names the caller.
    assert identities == [f"key:{record.id}"] * 2
    parsed = keys.parse(key)
    assert parsed is not None
    stored = (tmp_path / "keys.sqlite3").read_bytes()
    assert parsed[1].encode() not in stored  # the secret itself is nowhere in the store
    assert keys.digest(parsed[1]).encode() in stored


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("wrong secret", "the API key is not valid"),
        ("revoked", "this API key was revoked"),
        ("expired", "this API key has expired"),
    ],
)
async def test_keys_that_no_longer_work(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path, state: str, message: str
) -> None:
    db = tmp_path / "keys.sqlite3"
    key, record = create_key(db, expires_in_s=0.01 if state == "expired" else None)
    if state == "wrong secret":
        key = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    if state == "revoked":
        store = SqliteKeyStore(db)
        assert await store.revoke(record.id, time.time())
        await store.aclose()
    await asyncio.sleep(0.02)
    url = serve(guarded(tmp_path))
    response = await client.post(
        f"{url}/chat/stream", json=ASK, headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == message


def test_the_openai_sdk_with_a_key_and_without(serve: Serve, tmp_path: Path) -> None:
    key, _ = create_key(tmp_path / "keys.sqlite3")
    url = serve(guarded(tmp_path))
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        reply = client.chat.completions.create(model="echo", messages=user("hi")["messages"])
        assert reply.choices[0].message.content == "hi"
    with (
        openai.OpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model="echo", messages=user("hi")["messages"])


async def test_public_routes_stay_public_and_a_401_is_readable_cross_origin(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = serve(guarded(tmp_path, cors_origins=["http://app.test"]))
    for path in ("/", "/healthz", "/providers", "/streamfn.js", "/docs", "/openapi.json"):
        assert (await client.get(f"{url}{path}")).status_code == 200, path
    refused = await client.post(
        f"{url}/chat/stream", json=ASK, headers={"origin": "http://app.test"}
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "http://app.test"
    preflight = await client.options(
        f"{url}/chat/stream",
        headers={
            "origin": "http://app.test",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200  # preflights carry no credentials, and need none


def test_keys_command_creates_lists_and_revokes(tmp_path: Path) -> None:
    db = tmp_path / "keys.sqlite3"
    cli = [sys.executable, "-m", "streamfn.cli", "keys", "--db", str(db)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, check=False)

    created = run("create", "--name", "web app", "--expires-days", "30")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    id, secret = keys.parse(key) or ("", "")
    assert id
    assert "shown only now" in created.stderr
    listed = run("list")
    assert id in listed.stdout
    assert "web app" in listed.stdout
    assert "active" in listed.stdout
    assert secret not in listed.stdout
    assert run("revoke", id).returncode == 0
    assert "revoked" in run("list").stdout
    assert run("revoke", id).returncode == 1  # already revoked


async def test_dynamodb_key_store(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    table = f"keys-{uuid.uuid4().hex[:8]}"
    create_keys_table(moto.dynamodb(), table)
    store = DynamoDBKeyStore(table)
    key, record = keys.create("lambda", expires_in_s=3600)
    await store.put(record)
    assert await store.get(record.id) == record
    assert [r.id for r in await store.all()] == [record.id]
    assert await store.revoke(record.id, 5.0)
    assert not await store.revoke(record.id, 6.0)
    revoked = await store.get(record.id)
    assert revoked is not None
    assert revoked.revoked_at == 5.0
    assert await store.get("000000000000") is None
    assert keys.parse(key) is not None


@pytest.mark.parametrize(
    ("settings", "host", "served"),
    [
        ({}, "127.0.0.1", True),
        ({}, "localhost:8000", True),
        ({}, "attacker.example", False),  # a DNS-rebound page on loopback
        ({"host": "0.0.0.0", "auth": "none"}, "anything.example", True),
        (
            {"host": "0.0.0.0", "auth": "none", "allowed_hosts": ["*.example.com"]},
            "api.example.com",
            True,
        ),
        (
            {"host": "0.0.0.0", "auth": "none", "allowed_hosts": ["*.example.com"]},
            "evil.test",
            False,
        ),
    ],
)
async def test_host_allowlist(
    serve: Serve,
    client: httpx.AsyncClient,
    settings: dict[str, Any],
    host: str,
    served: bool,
) -> None:
    with Upstream(Reply(body=list(t.OPENAI_ANSWER))) as up:
        app = create_app(
            Settings(
                usage_records=False, openai_api_key="k", openai_base_url=f"{up.url}/v1", **settings
            )
        )
        url = serve(app)
        response = await client.post(
            f"{url}/v1/chat/completions",
            json={"model": "openai", **ASK},
            headers={"host": host},
        )
    assert (response.status_code == 200) is served, response.text
    if not served:
        assert response.status_code == 400
        assert up.requests == []


@pytest.mark.parametrize("value", ["*", "http://a.test, http://b.test", '["http://b.test"]'])
async def test_cors_origins_as_a_star_a_list_or_json(
    serve: Serve, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("STREAMFN_CORS_ORIGINS", value)
    url = serve(create_app(Settings(usage_records=False, echo_delay_ms=0)))
    response = await client.post(
        f"{url}/chat/stream", json=ASK, headers={"origin": "http://b.test"}
    )
    allowed = response.headers["access-control-allow-origin"]
    assert allowed == ("*" if value == "*" else "http://b.test")
    assert "access-control-allow-credentials" not in response.headers  # never with *
    exposed = response.headers["access-control-expose-headers"].split(", ")
    assert exposed == list(CORS.expose_headers)  # the one contract (streamfn.origins)


# --- stream tokens: EventSource with auth on --------------------------------------------------


async def mint(client: httpx.AsyncClient, url: str, key: str, **query: Any) -> dict[str, Any]:
    response = await client.post(
        f"{url}/chat/stream/token", json=query, headers={"authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_stream_token_opens_one_get_for_exactly_its_query(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    key, record = create_key(tmp_path / "keys.sqlite3")
    url = serve(guarded(tmp_path))
    minted = await mint(client, url, key, prompt="one two", max_tokens=5)
    assert minted["expires_in"] == 60
    assert minted["url"].startswith("chat/stream?prompt=one+two&max_tokens=5&token=")
    # What EventSource does: a plain GET, no headers.
    response, events = await stream(client, f"{url}/{minted['url']}")
    assert response.status_code == 200
    assert text_of(events) == "one two"
    again = await client.get(f"{url}/{minted['url']}")
    assert again.status_code == 401
    assert again.json()["error"]["message"] == "the stream token was already used"
    other = await mint(client, url, key, prompt="one two")
    changed = other["url"].replace("prompt=one+two", "prompt=something+costly")
    refused = await client.get(f"{url}/{changed}")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "the stream token was minted for another request"
    forged = other["url"][:-3] + ("AAA" if not other["url"].endswith("AAA") else "BBB")
    assert (await client.get(f"{url}/{forged}")).status_code == 401
    assert (await client.get(f"{url}/chat/stream?prompt=hi")).status_code == 401  # cross-site GET
    in_url = await client.get(f"{url}/chat/stream", params={"prompt": "hi", "token": key})
    assert in_url.status_code == 401
    assert "does not go in a URL" in in_url.json()["error"]["message"]
    assert record.id


async def test_a_stream_token_expires(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamfn.auth import stream_tokens

    key, _ = create_key(tmp_path / "keys.sqlite3")
    url = serve(guarded(tmp_path))
    monkeypatch.setattr(stream_tokens, "LIFETIME_S", -1)
    minted = await mint(client, url, key, prompt="late")
    response = await client.get(f"{url}/{minted['url']}")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "the stream token has expired: mint another"


async def test_without_auth_the_token_route_gives_a_plain_url(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(create_app(Settings(usage_records=False, echo_delay_ms=0)))
    minted = (await client.post(f"{url}/chat/stream/token", json={"prompt": "hi"})).json()
    assert minted == {"token": None, "expires_in": None, "url": "chat/stream?prompt=hi"}
    _, events = await stream(client, f"{url}/{minted['url']}")
    assert text_of(events) == "hi"


async def test_dynamodb_claims_once_and_shares_one_secret(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    table = f"keys-{uuid.uuid4().hex[:8]}"
    create_keys_table(moto.dynamodb(), table)
    first, second = DynamoDBKeyStore(table), DynamoDBKeyStore(table)
    assert await first.claim("t1", time.time() + 60)
    assert not await second.claim("t1", time.time() + 60)
    assert await first.secret("s") == await second.secret("s")
    assert len(await first.secret("s")) == 32
    assert await first.all() == []  # claims and secrets are not keys


def test_keys_still_work_after_a_second_lifespan(tmp_path: Path) -> None:
    """Found by the fuzzer: a lifespan's shutdown closed the key store for good."""
    from starlette.testclient import TestClient

    key, _ = create_key(tmp_path / "keys.sqlite3")
    app = guarded(tmp_path)
    for _ in range(2):
        with TestClient(app, base_url="http://127.0.0.1") as test_client:
            response = test_client.post(
                "/chat/stream", json=ASK, headers={"authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200
            minted = test_client.post(
                "/chat/stream/token",
                json={"prompt": "hi"},
                headers={"authorization": f"Bearer {key}"},
            ).json()
            assert test_client.get(f"/{minted['url']}").status_code == 200


# --- per-request policy: allowed models, a default max_tokens cap ------------------------------


async def test_allowed_models_refuse_others_with_a_403_before_any_provider(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(Reply(body=list(t.OPENAI_ANSWER))) as up:
        settings = Settings(
            usage_records=False,
            openai_api_key="k",
            openai_base_url=f"{up.url}/v1",
            allowed_models=["openai/gpt-4o-mini", "echo/*"],
        )
        url = serve(create_app(settings))
        refused = await client.post(
            f"{url}/v1/chat/completions", json={"model": "openai/gpt-5-pro", **ASK}
        )
        native = await client.post(f"{url}/chat/stream", json={**ASK, "provider": "ollama"})
        allowed = await client.post(f"{url}/v1/chat/completions", json={"model": "openai", **ASK})
        models = (await client.get(f"{url}/v1/models")).json()["data"]
    assert refused.status_code == 403
    assert refused.json()["error"]["param"] == "model"
    assert "openai/gpt-5-pro is not allowed here" in refused.json()["error"]["message"]
    assert native.status_code == 403
    assert allowed.status_code == 200
    assert len(up.requests) == 1  # only the allowed one reached the provider
    assert [m["id"] for m in models] == ["echo/echo", "openai/gpt-4o-mini"]


async def test_a_request_without_max_tokens_gets_the_default_cap(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    with Upstream(Reply(body=list(t.OPENAI_ANSWER))) as up:
        url = serve(
            create_app(
                Settings(usage_records=False, openai_api_key="k", openai_base_url=f"{up.url}/v1")
            )
        )
        await client.post(f"{url}/v1/chat/completions", json={"model": "openai", **ASK})
        await client.post(
            f"{url}/v1/chat/completions",
            json={"model": "openai", "max_tokens": 1_000_000, **ASK},
        )
    assert [r.json()["max_tokens"] for r in up.requests] == [16384, 16384]


def test_a_loopback_server_named_for_a_public_host_is_exposed() -> None:
    """Behind a proxy, uvicorn listens on loopback but serves a public name: auth is on."""
    behind_proxy = Settings(host="127.0.0.1", allowed_hosts=["chat.example.com"])
    assert behind_proxy.auth_modes() == {"api_key"}
    assert Settings(allowed_hosts=["localhost"]).auth_modes() == {"none"}
