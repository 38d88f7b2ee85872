"""API keys: `sfn_<id>_<secret>`. The id is in the clear, so a key is found without a scan and
appears in logs, usage records and limits; only a SHA-256 of the secret is stored.

The secret is 256 random bits, so a fast hash is enough: nothing can be guessed faster than by
trying 2**256 keys (a slow password hash only helps with low-entropy secrets). Hashes are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

PREFIX = "sfn"
_KEY = re.compile(r"^sfn_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: everything but the key itself."""

    id: str
    name: str
    hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    # The key's own limits (`streamfn keys create`), in place of the defaults they name:
    # requests_per_minute, concurrent_streams, tokens_per_day, budget_usd with budget_period
    # (day or month), and models (provider/model patterns).
    limits: dict[str, Any] = field(default_factory=dict)

    def usable(self, now: float) -> str | None:
        """Why this key cannot be used now, or None when it can."""
        if self.revoked_at is not None:
            return "this API key was revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "this API key has expired"
        return None


def create(
    name: str, *, expires_in_s: float | None = None, limits: dict[str, Any] | None = None
) -> tuple[str, ApiKey]:
    """A new key (shown once) and the record to store."""
    id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    now = time.time()
    record = ApiKey(
        id=id,
        name=name,
        hash=digest(secret),
        created_at=now,
        expires_at=now + expires_in_s if expires_in_s else None,
        limits=dict(limits or {}),
    )
    return f"{PREFIX}_{id}_{secret}", record


def parse(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _KEY.match(key)
    return (match[1], match[2]) if match else None


def matches(record: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(record.hash, digest(secret))


class KeyStore(Protocol):
    """Where keys are kept (SQLite locally, DynamoDB in AWS). Blocking clients run in a thread."""

    async def get(self, id: str) -> ApiKey | None: ...

    async def put(self, record: ApiKey) -> None: ...

    async def all(self) -> list[ApiKey]: ...

    async def revoke(self, id: str, at: float) -> bool:
        """Mark `id` revoked; False when there is no such key."""
        ...

    async def claim(self, name: str, expires_at: float) -> bool:
        """Record `name` as used, once: True the first time, False ever after (until it
        expires). What makes a stream token single use across processes."""
        ...

    async def secret(self, name: str) -> bytes:
        """A random secret shared by every process using this store, made on first use."""
        ...

    async def aclose(self) -> None: ...
