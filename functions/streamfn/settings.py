"""Configuration: environment variables, read once into `Settings` by pydantic-settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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


class Settings(BaseSettings):
    """streamfn's own settings carry the `STREAMFN_` prefix (`STREAMFN_ECHO_DELAY_MS`, ...)."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMFN_", extra="ignore", frozen=True, populate_by_name=True
    )

    default_provider: str | None = Field(
        default=None,
        description="Provider used when a request names none; by default openai, else "
        "anthropic if configured, else echo.",
    )
    echo_delay_ms: int = Field(default=20, ge=0, description="Pace of the echo provider.")
    keepalive_s: float = Field(
        default=15, ge=0, description="Seconds between SSE keepalive comments; 0 disables them."
    )
    retry_ms: int = Field(
        default=3000, ge=0, description="Reconnect delay hinted to EventSource on the first event."
    )
    max_body_bytes: int = Field(default=1 << 20, ge=1, description="Largest accepted request body.")
    max_tokens_cap: int | None = Field(
        default=None, ge=1, description="Upper bound applied to every request's max_tokens."
    )
    first_token_timeout_s: float = Field(
        default=60, gt=0, description="Longest wait for the provider's first token."
    )
    idle_timeout_s: float = Field(default=60, gt=0, description="Longest gap between two tokens.")
    total_timeout_s: float = Field(default=600, gt=0, description="Longest whole stream.")
    deadline_margin_s: float = Field(
        default=2,
        ge=0,
        description="In Lambda, streams end this long before the invocation deadline.",
    )
    cors_origins: list[str] = Field(
        default=[],
        description="Origins allowed to call the local server from a browser (JSON list). "
        "Leave empty in Lambda, where the function URL's CORS settings apply.",
    )

    # Providers. Credentials use each ecosystem's own variable names, unprefixed.
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_model: str = "gpt-4o-mini"
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    anthropic_model: str = "claude-haiku-4-5"
    anthropic_max_tokens: int = Field(
        default=4096, ge=1, description="max_tokens sent to Anthropic when a request has none."
    )
    ollama_host: str = Field(default="http://127.0.0.1:11434", validation_alias="OLLAMA_HOST")
    ollama_model: str = "llama3.2"
    ollama_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="OLLAMA_API_KEY",
        description="Bearer token for ollama.com or an authenticating proxy.",
    )
    openai_compatible: list[CompatibleProvider] = Field(
        default=[], description="Further OpenAI-compatible providers (JSON list)."
    )
    upstream_retries: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Retries of a failed upstream request before the first token. 0 hands a "
        "429 or 5xx straight to the client, which knows best whether to wait.",
    )
    connect_timeout_s: float = Field(default=10, gt=0, description="Connecting to a provider.")
