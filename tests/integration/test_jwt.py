"""JWT auth against a fake identity provider on loopback: its JWKS served over HTTP, keys rotated
mid-test; PyJWT verifies, streamfn only decides what to accept."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.conftest import ServerThread
from tests.keys import create_key
from tests.sse_client import stream, text_of

Serve = Callable[[ASGIApp], str]
ASK = {"messages": [{"role": "user", "content": "hello there"}]}
AUDIENCE = "streamfn-api"


class IdentityProvider:
    """Signs tokens; serves the public half of its current keys as a JWKS."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.rotate()

    def rotate(self) -> str:
        kid = f"k{len(self.keys) + 1}"
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        return kid

    async def jwks(self, _request: Request) -> JSONResponse:
        self.fetches += 1
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": keys})

    def token(self, issuer: str, **claims: Any) -> str:
        kid, key = next(iter(self.keys.items()))
        body = {"iss": issuer, "aud": AUDIENCE, "sub": "user-1", "exp": time.time() + 60}
        return jwt.encode({**body, **claims}, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[tuple[IdentityProvider, str]]:
    provider = IdentityProvider()
    app = Starlette(routes=[Route("/.well-known/jwks.json", provider.jwks)])
    with ServerThread(app) as server:
        yield provider, server.url


def jwt_app(issuer: str, tmp_path: Path, auth: str = "jwt", cooldown: float = 30) -> ASGIApp:
    return create_app(
        Settings(
            auth=auth,
            jwt_issuer=issuer,
            jwt_audience=AUDIENCE,
            jwt_refetch_cooldown_s=cooldown,
            keys_db=tmp_path / "keys.sqlite3",
            usage_records=False,
            echo_delay_ms=0,
        )
    )


async def call(client: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
    return await client.post(
        f"{url}/chat/stream", json=ASK, headers={"authorization": f"Bearer {token}"}
    )


async def test_a_valid_token_streams_and_bad_ones_are_401s(
    serve: Serve, client: httpx.AsyncClient, idp: tuple[IdentityProvider, str], tmp_path: Path
) -> None:
    provider, issuer = idp
    url = serve(jwt_app(issuer, tmp_path))
    client.headers["authorization"] = f"Bearer {provider.token(issuer)}"
    response, events = await stream(client, f"{url}/chat/stream", ASK)
    client.headers.pop("authorization")
    assert response.status_code == 200
    assert text_of(events) == "hello there"
    bad = {
        "expired": provider.token(issuer, exp=time.time() - 10),
        "another audience": provider.token(issuer, aud="someone-else"),
        "another issuer": provider.token("https://evil.example"),
        "no subject": provider.token(issuer, sub=None),
        "alg none": jwt.encode({"iss": issuer, "aud": AUDIENCE, "sub": "x"}, None, "none"),
    }
    for case, token in bad.items():
        refused = await call(client, url, token)
        assert refused.status_code == 401, case
        assert refused.json()["error"]["message"].startswith("the token is not valid"), case


async def test_rotated_keys_are_picked_up_and_old_ones_dropped(
    serve: Serve, client: httpx.AsyncClient, idp: tuple[IdentityProvider, str], tmp_path: Path
) -> None:
    provider, issuer = idp
    url = serve(jwt_app(issuer, tmp_path, cooldown=0))
    old = provider.token(issuer)
    assert (await call(client, url, old)).status_code == 200
    assert (await call(client, url, old)).status_code == 200
    assert provider.fetches == 1  # the key set is cached
    provider.rotate()
    assert (await call(client, url, provider.token(issuer))).status_code == 200  # refetched
    assert provider.fetches == 2
    assert (await call(client, url, old)).status_code == 401  # its key is gone from the set


async def test_made_up_key_ids_do_not_hammer_the_issuer(
    serve: Serve, client: httpx.AsyncClient, idp: tuple[IdentityProvider, str], tmp_path: Path
) -> None:
    provider, issuer = idp
    url = serve(jwt_app(issuer, tmp_path))  # the default cooldown
    assert (await call(client, url, provider.token(issuer))).status_code == 200
    stranger = IdentityProvider()
    for _ in range(5):
        assert (await call(client, url, stranger.token(issuer))).status_code == 401
    assert provider.fetches <= 2


async def test_api_keys_and_jwts_together(
    serve: Serve, client: httpx.AsyncClient, idp: tuple[IdentityProvider, str], tmp_path: Path
) -> None:
    provider, issuer = idp
    key, _ = create_key(tmp_path / "keys.sqlite3")
    url = serve(jwt_app(issuer, tmp_path, auth="api_key,jwt"))
    assert (await call(client, url, key)).status_code == 200
    assert (await call(client, url, provider.token(issuer))).status_code == 200
    assert (await call(client, url, "not-a-credential")).status_code == 401


def test_jwt_mode_needs_issuer_and_audience() -> None:
    with pytest.raises(ValueError, match="needs STREAMFN_JWT_ISSUER and STREAMFN_JWT_AUDIENCE"):
        create_app(Settings(auth="jwt", usage_records=False))
