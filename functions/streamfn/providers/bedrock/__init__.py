"""`bedrock`: Amazon Bedrock's Converse API (`POST /model/{modelId}/converse-stream`).

The client: botocore's SigV4 signer and credential chain over streamfn's own httpx2 client, the
response read raw with `providers.eventstream`. Not boto3's `converse_stream`: its EventStream
reads a blocking socket, so every stream would hold a thread. Not aiobotocore: it brings aiohttp
and pins botocore to a narrow range (boto3 is here for DynamoDB and SSM and moves on its own),
and its pool holds 10 connections by default, which would queue the eleventh stream; here the
pool is STREAMFN_UPSTREAM_CONNECTIONS, as for every provider. What botocore does is kept:
`botocore.session` resolves credentials the way every AWS SDK does (environment, shared config
and credentials files and their profiles, SSO, web identity, container and instance roles, in
Lambda the function's role), `botocore.auth.SigV4Auth` signs, and a Bedrock API key in
AWS_BEARER_TOKEN_BEDROCK is sent as `Authorization: Bearer`, as botocore sends it.

Resolving credentials may block (an instance's metadata service, a container endpoint, SSO):
it runs in a worker thread, when the app starts (the registry builds a configured provider in
one) or else before the first stream, and again only when botocore says temporary credentials
need refreshing; never on the event loop.

This module is what the registry imports at start-up: it decides whether the provider exists
from the environment alone (no botocore import, no network), with `enabled`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streamfn.providers.base import Capabilities
from streamfn.providers.bedrock import converse
from streamfn.request import ChatRequest
from streamfn.settings import Settings, in_lambda

NAME = "bedrock"


@dataclass(frozen=True, slots=True)
class ConverseCapabilities(Capabilities):
    """What Converse can take, whatever the model: images as bytes only, no tool_choice none
    once tools were called, no switch for parallel calls (`converse.check`); Claude's thinking
    budget of at least 1024 tokens, and `outputConfig.effort`'s levels."""

    def check(self, request: ChatRequest, provider: str) -> None:
        Capabilities.check(self, request, provider)
        converse.check(request, provider)


CAPABILITIES = ConverseCapabilities(
    image_urls=False,
    efforts=frozenset({"low", "medium", "high", "xhigh", "max"}),
    min_reasoning_budget=1024,
)


def enabled(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to offer `bedrock`: always in Lambda (the function's role), when asked for by
    name (STREAMFN_BEDROCK_MODEL, or STREAMFN_DEFAULT_PROVIDER=bedrock), or when a region (or an
    endpoint) and credentials can be seen (`credentials_hint`)."""
    environ = os.environ if environ is None else environ
    if in_lambda() or asked_for(settings):
        return True
    where = settings.aws_region or settings.bedrock_endpoint_url or _shared_config(environ)
    return bool(where) and credentials_hint(settings, environ) is not None


def asked_for(settings: Settings) -> bool:
    """Configured for Bedrock by name: then the provider is built (and its credentials
    resolved) when the app starts, rather than before its first stream."""
    return (
        "bedrock_model" in settings.model_fields_set
        or settings.default_provider == NAME
        or settings.bedrock_bearer_token is not None
    )


def credentials_hint(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """Where credentials seem to be, judged from variable names and files' existence only;
    botocore reads them later. An instance role (EC2's metadata service) cannot be seen
    without a network call: there, name the provider (STREAMFN_BEDROCK_MODEL)."""
    if settings.bedrock_bearer_token is not None:
        return "AWS_BEARER_TOKEN_BEDROCK"
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return "environment variables"
    if environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or environ.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        return "container credentials"
    if environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") and environ.get("AWS_ROLE_ARN"):
        return "web identity"
    if environ.get("AWS_PROFILE"):
        return "profile " + environ["AWS_PROFILE"]
    credentials = environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    if _is_file(credentials) or _shared_config(environ):
        return "shared config files"
    return None


def _shared_config(environ: Mapping[str, str]) -> bool:
    """A shared config file exists (its profile may name a region and credentials)."""
    return _is_file(environ.get("AWS_CONFIG_FILE") or "~/.aws/config")


def _is_file(path: str) -> bool:
    try:
        return Path(path).expanduser().is_file()
    except (RuntimeError, OSError):  # no home directory to expand ~ to
        return False
