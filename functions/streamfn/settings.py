"""Configuration: environment variables, read once into `Settings` by pydantic-settings."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class CompatibleProvider(BaseModel):
    """A named OpenAI-compatible server (vLLM, LM Studio, llama.cpp, Groq, OpenRouter, ...).

    The key is named by an environment variable (`api_key_env`), never written in the list.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    base_url: str
    default_model: str
    api_key_env: str | None = None
    # OpenAI's own API wants max_completion_tokens; most compatible servers know max_tokens only.
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    responses: bool = Field(
        default=False,
        description="Whether the server serves the Responses API itself (`POST "
        "<base_url>/responses`): requests to streamfn's /v1/responses are then passed through "
        "to it as the client sent them; else (and every other protocol's, always) they are "
        "translated to Chat Completions.",
    )


class ModelPrices(BaseModel):
    """A model's prices in USD per million tokens (STREAMFN_PRICES); cached input costs what
    input does unless priced apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_mtok: Decimal = Field(ge=0)
    output_mtok: Decimal = Field(ge=0)
    cache_read_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_mtok: Decimal | None = Field(default=None, ge=0)


def in_lambda() -> bool:
    """Whether this process is a Lambda function (Lambda sets this variable in every runtime)."""
    return "AWS_LAMBDA_FUNCTION_NAME" in os.environ


def _data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "streamfn"


def _default_usage_db() -> Path:
    return _data_dir() / "usage.sqlite3"


AUTH_MODES = frozenset({"none", "api_key", "jwt"})
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Settings(BaseSettings):
    """streamfn's own settings carry the `STREAMFN_` prefix (`STREAMFN_ECHO_DELAY_MS`, ...)."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMFN_", extra="ignore", frozen=True, populate_by_name=True
    )

    auth: str | None = Field(
        default=None,
        description="none, api_key, jwt, or api_key,jwt. Default: none when serving on loopback "
        "outside Lambda (make run), api_key anywhere else.",
    )
    host: str = Field(
        default="127.0.0.1",
        validation_alias="HOST",
        description="Where the local server listens (make run); decides the auth default.",
    )
    allowed_hosts: list[str] = Field(
        default=[],
        description="Host header values served (JSON list; *.example.com allowed). Default: "
        "the local names on loopback (against DNS rebinding), any host elsewhere.",
    )
    jwt_issuer: str | None = Field(
        default=None, description="STREAMFN_AUTH=jwt: the identity provider's issuer (iss)."
    )
    jwt_audience: str | None = Field(default=None, description="The audience (aud) to expect.")
    jwt_jwks_url: str | None = Field(
        default=None, description="The JWKS; default: <issuer>/.well-known/jwks.json."
    )
    jwt_refetch_cooldown_s: float = Field(
        default=30, ge=0, description="Least time between two fetches of the JWKS (rotation)."
    )
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default=["RS256", "ES256"], description="Signature algorithms accepted."
    )
    keys_db: Path = Field(
        default_factory=lambda: _data_dir() / "keys.sqlite3",
        description="SQLite file of API keys when no DynamoDB table is set.",
    )
    keys_table: str | None = Field(
        default=None, description="DynamoDB table of API keys (the SAM template sets it)."
    )
    limits_table: str | None = Field(
        default=None,
        description="DynamoDB table where per-identity limits are counted, shared by every "
        "process and Lambda environment (the SAM template sets it); unset: counted in memory.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="redis:// or rediss:// URL of the Redis a fleet of servers shares: "
        "per-identity limits and concurrent-stream slots are counted there, and stream tokens "
        "redeemed once across the fleet (its password, if any, is never logged).",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql:// URL of the PostgreSQL a fleet of servers shares: API keys "
        "and usage records are kept there (the schema is made and migrated at start).",
    )
    default_provider: str | None = Field(
        default=None,
        description="Provider used when a request names none; by default openai, else "
        "anthropic, else gemini (the first configured), else echo.",
    )
    echo_delay_ms: int = Field(default=20, ge=0, description="Pace of the echo provider.")
    keepalive_s: float = Field(
        default=15, ge=0, description="Seconds between SSE keepalive comments; 0 disables them."
    )
    early_commit_s: float | None = Field(
        default=None,
        gt=0,
        description="Opt-in: after this many seconds without a first token, send the status and "
        "headers and start keepalive comments (for models that think for minutes behind "
        "proxies that cut idle connections); a later failure is then an error event, not an "
        "HTTP status. Unset: the status waits for the first token.",
    )
    resume: bool = Field(
        default=True,
        description="Keep every stream's events in a log so that a client that lost its "
        "connection can resume it (GET /chat/stream/{id}); false: a disconnect cancels the "
        "stream at once.",
    )
    resume_grace_s: float = Field(
        default=20,
        ge=0,
        description="How long a stream goes on after its client left, waiting for it to "
        "resume, before the upstream request is cancelled.",
    )
    resume_ttl_s: int = Field(
        default=3600, ge=60, description="How long a stream's events are kept for resuming."
    )
    responses_ttl_s: int = Field(
        default=30 * 86400,
        ge=60,
        description="How long the Responses API keeps a stored response (`store: true`) for "
        "GET /v1/responses/{id} and `previous_response_id`: OpenAI's 30 days by default.",
    )
    resume_max_bytes: int = Field(
        default=512 << 20,
        ge=1 << 20,
        description="The local stream log's bound (SQLite): past it, the oldest ended streams "
        "are deleted, before their STREAMFN_RESUME_TTL_S.",
    )
    max_stream_bytes: int = Field(
        default=16 << 20,
        ge=1024,
        description="The most one stream may carry (characters of text, reasoning and tool-call "
        "arguments, about bytes): past it the stream ends with a too_large error and its "
        "upstream request is cancelled. 16 MiB, far above any real answer, bounds what a "
        "stream holds in memory and in the log.",
    )
    streams_db: Path = Field(
        default_factory=lambda: _data_dir() / "streams.sqlite3",
        description="SQLite file of the stream log when no DynamoDB table is set.",
    )
    streams_table: str | None = Field(
        default=None,
        description="DynamoDB table of the stream log, read by every Lambda environment (the "
        "SAM template sets it).",
    )
    retry_ms: int = Field(
        default=3000, ge=0, description="Reconnect delay hinted to EventSource on the first event."
    )
    max_body_bytes: int = Field(
        default=6 << 20,
        ge=1,
        description="Largest accepted request body (6 MiB, a Lambda function URL's own limit, "
        "leaves room for an image).",
    )
    max_images: int = Field(default=20, ge=0, description="Most images in one request.")
    max_messages: int = Field(default=500, ge=1, description="Most messages in one request.")
    max_input_chars: int = Field(
        default=400_000,
        ge=1,
        description="Most characters of text in one request (about 100k tokens).",
    )
    max_image_bytes: int = Field(
        default=4 << 20, ge=1, description="Largest inline (data: URL) image, decoded."
    )
    max_tokens_cap: int | None = Field(
        default=16384,
        ge=1,
        description="Upper bound on every request's max_tokens, and its value when a request "
        "sets none: no request is unbounded.",
    )
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Per identity (API key, else address); unset: no limit."
    )
    concurrent_streams: int | None = Field(
        default=None, ge=1, description="Open streams per identity; unset: no limit."
    )
    tokens_per_day: int | None = Field(
        default=None, ge=1, description="Tokens per identity per UTC day; unset: no limit."
    )
    budget_usd_per_day: float | None = Field(
        default=None,
        gt=0,
        description="What each identity may spend per UTC day, in USD (a key's own budget, "
        "`streamfn keys create --budget-usd`, replaces it): a request is admitted while what "
        "the identity spent and reserved (what its max_tokens could cost) is under it; "
        "unset: no budget.",
    )
    allowed_models: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="provider/model patterns requests may use (JSON or comma list; "
        "anthropic/* allowed); empty: all. Others get 403.",
    )
    first_token_timeout_s: float = Field(
        default=60, gt=0, description="Longest wait for the provider's first token."
    )
    idle_timeout_s: float = Field(default=60, gt=0, description="Longest gap between two tokens.")
    total_timeout_s: float = Field(default=600, gt=0, description="Longest whole stream.")
    write_timeout_s: float = Field(
        default=15,
        gt=0,
        description="A client that takes no bytes for this long (it stopped reading) is "
        "treated as gone, and its upstream request cancelled.",
    )
    deadline_margin_s: float = Field(
        default=2,
        ge=0,
        description="In Lambda, streams end this long before the invocation deadline.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Origins whose pages may call the server from a browser (a JSON list, a "
        "comma-separated list, or *); requests from other origins to the routes that spend are "
        "refused (403). In Lambda, template.yaml sets it from CorsAllowedOrigins.",
    )

    # Providers. Credentials use each ecosystem's own variable names, unprefixed.
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    # Sent as OpenAI-Organization and OpenAI-Project, as the openai SDK sends them.
    openai_organization: str | None = Field(default=None, validation_alias="OPENAI_ORG_ID")
    openai_project: str | None = Field(default=None, validation_alias="OPENAI_PROJECT_ID")
    openai_model: str = "gpt-4o-mini"
    openai_responses: bool | None = Field(
        default=None,
        description="Whether the openai provider's server (OPENAI_BASE_URL) serves the "
        "Responses API itself (`POST <base_url>/responses`): requests to streamfn's "
        "/v1/responses are then passed through to it as the client sent them; else (and every "
        "other protocol's, always) they are translated to Chat Completions. Default: true for "
        "OpenAI's own API (no OPENAI_BASE_URL, or api.openai.com), false for other servers.",
    )
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    anthropic_model: str = "claude-haiku-4-5"
    anthropic_max_tokens: int = Field(
        default=4096, ge=1, description="max_tokens sent to Anthropic when a request has none."
    )
    # Gemini: google-genai's own variables (google/genai/_api_client.py, _base_url.py).
    gemini_api_key: SecretStr | None = Field(
        default=None,
        # GEMINI_API_KEY first: GOOGLE_API_KEY is also the name of keys for other Google APIs
        # (google-genai itself prefers GOOGLE_API_KEY when both are set, with a warning).
        validation_alias=AliasChoices("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        description="The Gemini API key (GEMINI_API_KEY, else GOOGLE_API_KEY).",
    )
    gemini_base_url: str | None = Field(
        default=None,
        validation_alias="GOOGLE_GEMINI_BASE_URL",
        description="The Gemini API's URL, before /v1beta; default "
        "https://generativelanguage.googleapis.com.",
    )
    gemini_model: str = Field(
        default="gemini-2.5-flash", description="The Gemini model of requests that name none."
    )
    ollama_host: str = Field(default="http://127.0.0.1:11434", validation_alias="OLLAMA_HOST")
    ollama_model: str = "llama3.2"
    ollama_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="OLLAMA_API_KEY",
        description="Bearer token for ollama.com or an authenticating proxy.",
    )
    # Amazon Bedrock: AWS's own variables; credentials come from botocore's chain (environment,
    # profiles, SSO, container and instance roles, the Lambda function's role).
    bedrock_model: str = Field(
        default="us.anthropic.claude-haiku-4-5-20251001-v1:0",
        description="The Bedrock model of requests that name none: a model id, an inference "
        "profile id or an ARN.",
    )
    bedrock_bearer_token: SecretStr | None = Field(
        default=None,
        validation_alias="AWS_BEARER_TOKEN_BEDROCK",
        description="A Bedrock API key, sent as a Bearer token instead of SigV4 signing.",
    )
    aws_region: str | None = Field(
        default=None,
        # Lambda sets AWS_REGION; botocore alone reads only AWS_DEFAULT_REGION.
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="Bedrock's region (else the profile's, from the shared config file).",
    )
    bedrock_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL"),
        description="Bedrock runtime's URL; default https://bedrock-runtime.<region>.amazonaws.com.",
    )
    openai_compatible: list[CompatibleProvider] = Field(
        default=[], description="Further OpenAI-compatible providers (JSON list)."
    )
    upstream_connections: int = Field(
        default=10000,
        ge=1,
        description="Connections each provider may hold open to its upstream: one per stream "
        "in flight (the SDKs' own default, 1,000, would queue the stream after it).",
    )
    upstream_retries: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Retries of a retryable failure (429, 5xx, overloaded, a broken connection, "
        "no first token) before the first token, with backoff; per provider tried. 0 hands it "
        "straight to the client (or to the next fallback), which knows best whether to wait.",
    )
    fallbacks: dict[str, list[str]] = Field(
        default={},
        description="Alternatives tried in order when a provider fails retryably before its "
        'first token, as JSON: {"openai/gpt-4o": ["anthropic/claude-sonnet-4-5"], "openai": '
        "[...]} (by provider/model, else by provider). A request's own list replaces them.",
    )
    model_aliases: dict[str, str] = Field(
        default={},
        description="Model names a client insists on, mapped to the provider/model (or "
        'provider) that serves them, as JSON: {"claude-sonnet-4-5": "openai/gpt-4o", '
        '"claude-*": "echo"} (exact names first, then patterns in order). On every route that '
        "takes a model name.",
    )
    retry_max_wait_s: float = Field(
        default=4,
        ge=0,
        description="The longest single wait before a retry, Retry-After included; a longer "
        "Retry-After moves on to the next fallback at once.",
    )
    connect_timeout_s: float = Field(default=10, gt=0, description="Connecting to a provider.")

    # Usage records and observability.
    usage_records: bool = Field(
        default=True, description="Keep a usage record of every request (false turns them off)."
    )
    usage_db: Path = Field(
        default_factory=_default_usage_db,
        description="SQLite file for usage records when no DynamoDB table is set "
        "(default $XDG_DATA_HOME/streamfn/usage.sqlite3, else ~/.local/share/...).",
    )
    usage_table: str | None = Field(
        default=None, description="DynamoDB table for usage records (the SAM template sets it)."
    )
    usage_ttl_days: int = Field(
        default=90, ge=1, description="DynamoDB usage records expire (TTL) after this many days."
    )
    usage_write_timeout_s: float = Field(
        default=10, gt=0, description="Longest wait for a store to take one usage record."
    )
    prices: dict[str, ModelPrices | str | None] = Field(
        default={},
        description="Prices that override or add to genai-prices', per provider/model (or "
        'pattern), as JSON: {"vllm/llama-3.3-70b": {"input_mtok": 0.6, "output_mtok": 0.6}} '
        '(USD per million tokens; cache_read_mtok and cache_write_mtok too), {"openai/*": '
        '"openai"} (priced as genai-prices\' provider, and model if named: a proxy in front of '
        "OpenAI), or null (no price).",
    )
    log_content: bool = Field(
        default=False,
        description="Put messages and generated text in the request-end log line, and in "
        "OpenTelemetry spans (gen_ai.input.messages, gen_ai.output.messages). Off by "
        "default: prompts may hold personal data.",
    )
    metrics: Literal["emf", "log", "prometheus", "off"] = Field(
        default_factory=lambda: "emf" if in_lambda() else "log",
        description="Per-request metrics: CloudWatch EMF on stdout (default in Lambda), a log "
        "line (default elsewhere), Prometheus' GET /metrics (prometheus-client; behind auth "
        "when auth is on, else for this machine only), or none.",
    )
    metrics_namespace: str = Field(default="streamfn", description="CloudWatch namespace.")
    # OpenTelemetry: the standard variables (unprefixed), of which streamfn reads those that
    # decide what is exported; the SDK reads the others itself (headers, timeout, service name,
    # resource attributes, sampler). No endpoint: nothing is exported, nor the SDK imported.
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OTLP/HTTP collector base URL (http://localhost:4318): traces to "
        "/v1/traces, metrics to /v1/metrics.",
    )
    otel_traces_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="The URL spans go to, as is (else the base URL's /v1/traces).",
    )
    otel_metrics_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        description="The URL metrics go to, as is (else the base URL's /v1/metrics).",
    )
    otel_traces_protocol: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
        description="http/protobuf, the only one streamfn speaks (others: nothing exported).",
    )
    otel_metrics_protocol: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
        description="As OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, for metrics.",
    )
    otel_traces_exporter: str = Field(
        default="otlp",
        validation_alias="OTEL_TRACES_EXPORTER",
        description="otlp, or none: no spans exported.",
    )
    otel_metrics_exporter: str = Field(
        default="otlp",
        validation_alias="OTEL_METRICS_EXPORTER",
        description="otlp, or none: no metrics exported.",
    )
    otel_sdk_disabled: bool = Field(
        default=False,
        validation_alias="OTEL_SDK_DISABLED",
        description="true: nothing exported, whatever the endpoints.",
    )

    @field_validator("cors_origins", "allowed_models", "jwt_algorithms", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value

    @field_validator("auth")
    @classmethod
    def _known_modes(cls, value: str | None) -> str | None:
        if value is None:
            return None
        modes = {m.strip() for m in value.split(",") if m.strip()}
        if not modes or not modes <= AUTH_MODES or ("none" in modes and len(modes) > 1):
            raise ValueError("STREAMFN_AUTH is none, api_key, jwt, or api_key,jwt")
        return value

    @staticmethod
    def lambda_mode() -> bool:
        return in_lambda()

    def on_loopback(self) -> bool:
        """Serving only this machine: the local server on a loopback address, not Lambda, and
        not named for other hosts (behind a proxy, uvicorn listens on loopback but answers to
        the public name in STREAMFN_ALLOWED_HOSTS: that server is exposed)."""
        local = not in_lambda() and (self.host in LOOPBACK or self.host.startswith("127."))
        return local and all(h in LOOPBACK or h.startswith("127.") for h in self.allowed_hosts)

    def hosts(self) -> list[str] | None:
        """The Host values to serve; None for any."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.on_loopback():
            # A page whose own name an attacker re-points at 127.0.0.1 (DNS rebinding) sends
            # its name as Host: only the machine's own names reach the server.
            return ["127.0.0.1", "localhost", "::1", self.host]
        return None

    def auth_modes(self) -> frozenset[str]:
        """The auth modes in force: as set, else none on loopback and api_key elsewhere."""
        if self.auth is None:
            return frozenset({"none"}) if self.on_loopback() else frozenset({"api_key"})
        return frozenset(m.strip() for m in self.auth.split(",") if m.strip())
