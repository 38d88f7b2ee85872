"""Where Bedrock is and how a request to it is authorised: region, endpoint, credentials, SigV4.

Everything that may block (botocore's import, reading the shared config files, fetching
credentials from a metadata or container endpoint, refreshing them) runs in a worker thread,
one at a time; requests made meanwhile wait for it (or, while temporary credentials are merely
due for a refresh, go on with the current ones). Signing is CPU only and runs on the loop.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from streamfn.providers import upstream

logger = logging.getLogger(__name__)

SIGNING_NAME = "bedrock"  # the service model's signingName (bedrock-runtime/service-2.json)
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_RETRY_ADVISORY_S = 30.0  # between refreshes tried before credentials must be replaced
_RETRY_MISSING_S = 30.0  # between looks for credentials that were not found (an SSO login)


class NotConfigured(Exception):
    """Bedrock cannot be called as configured (no region, no credentials); `str` says what to
    set, and holds no secret."""


def endpoint_url(region: str | None, override: str | None) -> str:
    """AWS_ENDPOINT_URL_BEDROCK_RUNTIME (or AWS_ENDPOINT_URL), else the region's endpoint."""
    if override:
        return override.rstrip("/")
    if not region:
        raise NotConfigured(
            "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the profile)"
        )
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://bedrock-runtime.{region}.{suffix}"


@dataclass(frozen=True, slots=True)
class Target:
    endpoint: str
    region: str | None


class AwsAccess:
    """The endpoint and the `Authorization` of every request to it, for one provider."""

    def __init__(
        self, *, region: str | None, endpoint: str | None, bearer_token: str | None
    ) -> None:
        self._region = region
        self._endpoint = endpoint
        self._bearer = bearer_token
        self._target: Target | None = None
        self._credentials: Any = None  # botocore's Credentials, refreshable or not
        self._frozen: Any = None  # botocore's ReadOnlyCredentials, as of the last refresh
        self._problem: str | None = None  # why it cannot be called, as last resolved
        self._problem_at = 0.0
        self._updating: asyncio.Future[None] | None = None
        self._background: asyncio.Future[None] | None = None
        self._tried_at = 0.0

    def resolve(self) -> None:
        """Find the region, endpoint and credentials. Blocking: call it in a worker thread."""
        try:
            self._resolve()
        except NotConfigured as exc:
            self._problem, self._problem_at = str(exc), time.monotonic()
            logger.warning("bedrock cannot be called: %s", exc)
        else:
            self._problem = None

    def prepare(self) -> None:
        """`resolve` as the app starts: a failure to fetch credentials then is logged, not
        raised (it would stop the app, and every other provider with it), and they are looked
        for again before the first stream."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.resolve()
        except (BotoCoreError, ClientError, OSError, RuntimeError) as exc:
            logger.warning(
                "resolving AWS credentials failed (tried again before the first stream): %s",
                upstream.redact(f"{type(exc).__name__}: {exc}", self.secrets()),
            )

    def _resolve(self) -> None:
        if self._bearer is not None:
            endpoint = endpoint_url(self._region, self._endpoint)
            parts = urlsplit(endpoint)
            if parts.scheme != "https" and parts.hostname not in _LOOPBACK:
                # botocore refuses too: the key would cross the network in the clear.
                raise NotConfigured(
                    "AWS_BEARER_TOKEN_BEDROCK is sent only over https (or to a loopback "
                    "address); AWS_ENDPOINT_URL_BEDROCK_RUNTIME is not https"
                )
            self._target = Target(endpoint, self._region)
            return
        import botocore.session  # 0.15 s of imports: in this thread, not on the loop

        session = botocore.session.Session()
        region = self._region or session.get_config_variable("region")
        if not region:
            raise NotConfigured(
                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or a region in the "
                "profile); SigV4 signs for one"
            )
        credentials = session.get_credentials()
        if credentials is None:
            raise NotConfigured(
                "no AWS credentials found (environment, AWS_PROFILE, shared files, SSO, "
                "container or instance role); or set AWS_BEARER_TOKEN_BEDROCK"
            )
        self._credentials = credentials
        self._frozen = credentials.get_frozen_credentials()
        self._target = Target(endpoint_url(region, self._endpoint), region)
        import botocore.auth  # for `sign`: imported here, not on the loop
        import botocore.awsrequest

    async def target(self) -> Target:
        """Where to send requests, with credentials ready; `NotConfigured` when there are none.
        Resolves (the first time) and refreshes in a worker thread."""
        if self._problem is not None:
            if time.monotonic() - self._problem_at < _RETRY_MISSING_S:
                raise NotConfigured(self._problem)
            self._problem = None  # looked for again: credentials may have appeared since
        if self._target is None or self._must_refresh():
            await self._update()
        elif self._may_refresh() and self._updating is None:
            # Due but not yet needed: refreshed in the background, these credentials meanwhile.
            self._tried_at = time.monotonic()
            self._background = asyncio.ensure_future(self._update())  # kept: not collected
            self._background.add_done_callback(_log_failure)
        if self._problem is not None:
            raise NotConfigured(self._problem)
        assert self._target is not None
        return self._target

    def _must_refresh(self) -> bool:
        refresh_needed = getattr(self._credentials, "refresh_needed", None)
        if refresh_needed is None:
            return False
        # botocore's mandatory window: past it, its own signer would block for new ones.
        mandatory = getattr(self._credentials, "_mandatory_refresh_timeout", 600)
        return bool(refresh_needed(mandatory))

    def _may_refresh(self) -> bool:
        refresh_needed = getattr(self._credentials, "refresh_needed", None)
        recently = time.monotonic() - self._tried_at < _RETRY_ADVISORY_S
        return refresh_needed is not None and not recently and bool(refresh_needed())

    async def _update(self) -> None:
        """One worker thread at a time resolves or refreshes; every caller waits for it."""
        if self._updating is None:
            self._updating = asyncio.ensure_future(asyncio.to_thread(self._refresh))
            self._updating.add_done_callback(self._updated)
        # Shielded: a stream that is cancelled while waiting leaves it running for the others.
        await asyncio.shield(self._updating)

    def _updated(self, _: asyncio.Future[None]) -> None:
        self._updating = None

    def _refresh(self) -> None:
        if self._target is None:
            self.resolve()
            return
        # botocore refreshes what needs it (its lock serialises this with any other thread).
        self._frozen = self._credentials.get_frozen_credentials()

    def sign(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """`headers` with the request's authorisation: the Bearer key, or a SigV4 signature of
        the method, path, headers and body (botocore's signer, for service `bedrock`)."""
        if self._bearer is not None:
            return {**headers, "authorization": f"Bearer {self._bearer}"}
        from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth  # imported by `_resolve`
        from botocore.awsrequest import AWSRequest

        assert self._target is not None
        assert self._target.region is not None  # `_resolve` found one for SigV4
        assert self._frozen is not None
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        signer = SigV4Auth(self._frozen, SIGNING_NAME, self._target.region)
        # SigV4Auth.add_auth's own steps, without its DEBUG log lines: they print the canonical
        # request (the session token is one of its headers) and the signature.
        timestamp = datetime.datetime.now(datetime.UTC).strftime(SIGV4_TIMESTAMP)
        request.context["timestamp"] = timestamp
        request.headers["X-Amz-Date"] = timestamp
        if self._frozen.token:
            request.headers["X-Amz-Security-Token"] = self._frozen.token
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        signed = signer.signed_headers(signer.headers_to_sign(request))
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return dict(request.headers.items())

    def secrets(self) -> list[str | None]:
        """What must never reach a client or a log line."""
        frozen = self._frozen
        if frozen is None:
            return [self._bearer]
        return [self._bearer, frozen.secret_key, frozen.token]


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        # botocore keeps the current credentials when an early refresh fails.
        logger.warning("refreshing AWS credentials failed: %s: %.300s", type(exc).__name__, exc)
