"""JWTs from an identity provider (Cognito, Auth0, Clerk, ...), verified with PyJWT against the
issuer's JWKS: the keys are fetched and cached, and a token signed with a key not yet seen makes
PyJWT fetch the set again (rotation), at most once per cooldown. Issuer, audience, expiry and
the algorithm are all checked; no crypto is written here."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import jwt

from streamfn.auth.gate import Identity, Unauthorized

REQUIRED = ["exp", "iss", "aud", "sub"]


class JwtVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        algorithms: Sequence[str],
        refetch_cooldown_s: float = 30,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._algorithms = list(algorithms)
        # An unknown key id makes PyJWT fetch the set again, but not within the cooldown of the
        # last fetch: tokens with made-up key ids cannot make streamfn hammer the issuer.
        self._keys = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=300,
            timeout=5,
            cooldown_duration=refetch_cooldown_s,
        )

    def _claims(self, token: str) -> dict[str, object]:
        key = self._keys.get_signing_key_from_jwt(token)
        claims: dict[str, object] = jwt.decode(
            token,
            key.key,
            algorithms=self._algorithms,
            audience=self._audience,
            issuer=self._issuer,
            options={"require": REQUIRED},
        )
        return claims

    async def verify(self, token: str) -> Identity:
        """The token's subject, or `Unauthorized` saying what is wrong with it."""
        try:
            # PyJWKClient fetches with urllib: off the event loop.
            claims = await asyncio.to_thread(self._claims, token)
        except jwt.PyJWKClientConnectionError:
            raise Unauthorized("the token's signing keys could not be fetched") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from None
        name = claims.get("name") or claims.get("email")
        return Identity(f"jwt:{claims['sub']}", str(name) if name else None)
