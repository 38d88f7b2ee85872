"""The gate: a request's credentials become an `Identity`, or it is refused with a 401 before
its body is read and long before any provider is called.

Credentials are an API key as `Authorization: Bearer <key>` or `x-api-key: <key>` (what the
Anthropic SDK sends). In the scope, the identity is under `streamfn.identity` for the rest of
the request (usage records, logs and limits name the key's id, never the key).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from streamfn.auth import keys
from streamfn.auth.keys import KeyStore
from streamfn.auth.stores import DynamoDBKeyStore, PostgresKeyStore, SqliteKeyStore
from streamfn.auth.stream_tokens import Claims, RedisClaims, StreamTokens, TokenError
from streamfn.errors import StoreUnavailable
from streamfn.postgres import database
from streamfn.settings import Settings

if TYPE_CHECKING:
    from streamfn.auth.jwt_auth import JwtVerifier

logger = logging.getLogger(__name__)

SCOPE_KEY = "streamfn.identity"
CHALLENGE = {"www-authenticate": 'Bearer realm="streamfn"'}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called: `id` is what records and limits name (`key:<id>`)."""

    id: str
    name: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    # Proved by a stream token already used: it may resume its own streams, not start one.
    resume_only: bool = False


class Unauthorized(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def credential(headers: Mapping[str, str]) -> str | None:
    """The API key or token a request carries, if any."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


class Gate:
    """Checks credentials against the configured modes."""

    def __init__(
        self,
        modes: frozenset[str],
        store: KeyStore | None,
        jwt: JwtVerifier | None = None,
        *,
        resume_window_s: float = 0,
        claims: Claims | None = None,
    ) -> None:
        self.modes = modes
        self.store = store
        self.jwt = jwt
        self.tokens = StreamTokens(store, claims) if store is not None else None
        self.resume_window_s = resume_window_s

    @property
    def open(self) -> bool:
        return self.modes == frozenset({"none"})

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        """The caller's identity; None when auth is off. `Unauthorized` otherwise."""
        if self.open:
            return None
        token = credential(headers)
        if token is None:
            raise Unauthorized(
                "this server needs credentials: an API key or token as Authorization: Bearer "
                "<credential>, or x-api-key (keys: `streamfn keys create`)"
            )
        parsed = keys.parse(token)
        if parsed is None and self.jwt is not None:
            return await self.jwt.verify(token)
        if parsed is None or "api_key" not in self.modes or self.store is None:
            raise Unauthorized("the API key is not valid")
        id, secret = parsed
        record = await self.store.get(id)
        if record is None or not keys.matches(record, secret):
            raise Unauthorized("the API key is not valid")
        if (why := record.usable(time.time())) is not None:
            raise Unauthorized(why)
        return Identity(f"key:{record.id}", record.name, record.limits)

    async def from_url(
        self, path: str, query: Mapping[str, str], *, resuming: bool = False
    ) -> Identity | None:
        """The identity a URL carries (a stream token on `GET /chat/stream`, or on a resume
        `GET /chat/stream/{id}`), if any. An EventSource reconnecting (`resuming`: it sends
        Last-Event-ID, or its URL names its stream) comes back with its first URL, whose token
        is used by then: it is still good for resuming that caller's streams. `Unauthorized`
        for an API key in a URL: it would end up in logs and histories."""
        if any(keys.parse(value) for value in query.values()):
            raise Unauthorized(
                "an API key does not go in a URL (logs and browser histories keep URLs): "
                "POST /chat/stream/token for a short-lived stream token"
            )
        token = query.get("token")
        if not token or self.tokens is None or not path.startswith("/chat/stream"):
            return None
        try:
            if path == "/chat/stream":
                try:
                    return Identity(await self.tokens.redeem(token, query))
                except TokenError:
                    if not resuming:
                        raise
            elif not path.startswith("/chat/stream/") or path.endswith("/stop"):
                return None
            caller = await self.tokens.holder(token, self.resume_window_s)
            return Identity(caller, resume_only=True)
        except TokenError as exc:
            raise Unauthorized(exc.message) from None

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()


def open_gate(settings: Settings) -> Gate:
    """The gate `settings` ask for, with its key store."""
    modes = settings.auth_modes()
    verifier = None
    if "jwt" in modes:
        if not (settings.jwt_issuer and settings.jwt_audience):
            raise ValueError(
                "STREAMFN_AUTH=jwt needs STREAMFN_JWT_ISSUER and STREAMFN_JWT_AUDIENCE"
            )
        from streamfn.auth.jwt_auth import JwtVerifier  # PyJWT only where it is used

        verifier = JwtVerifier(
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            jwks_url=settings.jwt_jwks_url
            or settings.jwt_issuer.rstrip("/") + "/.well-known/jwks.json",
            algorithms=settings.jwt_algorithms,
            refetch_cooldown_s=settings.jwt_refetch_cooldown_s,
        )
    if modes == frozenset({"none"}):
        if not settings.on_loopback():
            logger.warning(
                "STREAMFN_AUTH=none on %s: anyone who can reach this server spends its "
                "providers' credit",
                "Lambda" if settings.lambda_mode() else settings.host,
            )
        return Gate(modes, None)
    window = settings.resume_ttl_s if settings.resume else 0
    store: KeyStore
    if settings.keys_table:
        store = DynamoDBKeyStore(settings.keys_table)
    elif settings.database_url:
        store = PostgresKeyStore(database(settings.database_url.get_secret_value()))
    else:
        store = SqliteKeyStore(settings.keys_db)
    claims = RedisClaims(settings.redis_url.get_secret_value()) if settings.redis_url else None
    return Gate(modes, store, verifier, resume_window_s=window, claims=claims)


Render = Callable[[str, int, str, str, Mapping[str, str]], Response]


class AuthMiddleware:
    """Refuses requests to `protected` paths without valid credentials, in the path's protocol
    (`render(path, status, type, message, headers)`). Runs inside the CORS middleware, so that
    preflights pass and browsers can read a 401."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: Gate,
        render: Render,
        protected: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.gate = gate
        self.render = render
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not self.gate.open
            and scope["method"] != "OPTIONS"
            and self.protected(scope["path"])
        ):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            try:
                identity = None
                if scope["method"] == "GET":
                    resuming = "last-event-id" in headers or "stream_id" in query
                    identity = await self.gate.from_url(scope["path"], query, resuming=resuming)
                scope[SCOPE_KEY] = identity or await self.gate.authenticate(headers)
            except Unauthorized as exc:
                response = self.render(scope["path"], 401, "unauthorized", exc.message, CHALLENGE)
                await response(scope, receive, send)
                return
            except StoreUnavailable as exc:  # the database, or Redis's claims
                logger.error("credentials cannot be checked: %s", exc)
                message = "credentials cannot be checked just now: try again shortly"
                response = self.render(
                    scope["path"], 503, "unavailable", message, {"Retry-After": "1"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
