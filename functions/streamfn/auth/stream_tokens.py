"""Stream tokens: how `EventSource`, which cannot send headers, streams when auth is on.

An authenticated `POST /chat/stream/token` mints a token for one exact `GET /chat/stream` query
(prompt, system, provider, model, limits); it is signed (HMAC-SHA256, `hmac` from the standard
library), names its caller, expires within a minute, and can be redeemed once. The signing key
and the record of redeemed tokens live in the key store, so every process and every Lambda
environment agrees on both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, Protocol

from streamfn.auth.keys import KeyStore
from streamfn.errors import StoreUnavailable

LIFETIME_S = 60
SECRET_NAME = "stream-token"
# The query fields a token binds (everything of `GET /chat/stream` but the token itself).
BOUND = (
    "prompt",
    "system",
    "provider",
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "reasoning_effort",
    "stream_id",
)


class TokenError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def binding(query: Mapping[str, Any]) -> str:
    """A digest of the query fields a token is for, given as strings or values alike."""
    fields = {k: str(query[k]) for k in BOUND if query.get(k) not in (None, "")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class Claims(Protocol):
    async def claim(self, name: str, expires_at: float) -> bool:
        """Record `name` as used, once: True the first time, False until it expires."""
        ...


class RedisClaims:
    """Claims in the fleet's Redis: `SET name 1 NX EXAT expires_at` is set by one caller only
    (https://redis.io/docs/latest/commands/set/)."""

    def __init__(self, url: str) -> None:
        from streamfn.redis_connection import where

        self._url = url
        self._where = where(url)

    async def claim(self, name: str, expires_at: float) -> bool:
        from redis.exceptions import RedisError

        from streamfn.redis_connection import client

        try:
            done = await client(self._url).set(
                f"streamfn:claim:{name}", b"1", nx=True, exat=int(expires_at) + 1
            )
        except (RedisError, OSError) as exc:
            # Not let through unrecorded: a token could then be redeemed twice.
            raise StoreUnavailable(
                f"stream tokens cannot be redeemed just now (Redis at {self._where}: "
                f"{type(exc).__name__})"
            ) from exc
        return bool(done)


class StreamTokens:
    def __init__(self, store: KeyStore, claims: Claims | None = None) -> None:
        self._store = store
        self._claims_store: Claims = claims if claims is not None else store

    async def _key(self) -> bytes:
        return await self._store.secret(SECRET_NAME)

    async def mint(self, caller: str, query: Mapping[str, Any]) -> tuple[str, int]:
        """A token for `caller` to stream `query`, and its lifetime in seconds."""
        claims = {
            "sub": caller,
            "exp": int(time.time()) + LIFETIME_S,
            "jti": secrets.token_urlsafe(12),
            "q": binding(query),
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(await self._key(), payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(signature)}", LIFETIME_S

    async def _claims(self, token: str) -> dict[str, Any]:
        payload, _, signature = token.partition(".")
        try:
            expected = hmac.new(await self._key(), payload.encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                raise TokenError("the stream token is not valid")
            claims = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            raise TokenError("the stream token is not valid") from None
        if not isinstance(claims, dict):
            raise TokenError("the stream token is not valid")
        return claims

    async def holder(self, token: str, window_s: float) -> str:
        """The caller a token names, used or not, within `window_s` of its expiry: what an
        EventSource reconnecting with its first URL proves. It may resume that caller's own
        streams, never start one."""
        claims = await self._claims(token)
        if int(claims.get("exp", 0)) + window_s < time.time():
            raise TokenError("the stream token is too old to resume with")
        return str(claims["sub"])

    async def redeem(self, token: str, query: Mapping[str, Any]) -> str:
        """The caller a valid, unused token names; `TokenError` otherwise."""
        claims = await self._claims(token)
        if int(claims.get("exp", 0)) < time.time():
            raise TokenError("the stream token has expired: mint another")
        if claims.get("q") != binding(query):
            raise TokenError("the stream token was minted for another request")
        if not await self._claims_store.claim(
            f"stream-token:{claims['jti']}", float(claims["exp"])
        ):
            raise TokenError("the stream token was already used")
        return str(claims["sub"])
