"""Configuration: environment variables, read once into `Settings` by pydantic-settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """streamfn's own settings carry the `STREAMFN_` prefix (`STREAMFN_ECHO_DELAY_MS`, ...)."""

    model_config = SettingsConfigDict(env_prefix="STREAMFN_", extra="ignore", frozen=True)

    default_provider: str = Field(
        default="echo", description="Provider used when a request names none."
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
    cors_origins: list[str] = Field(
        default=[],
        description="Origins allowed to call the local server from a browser (JSON list). "
        "Leave empty in Lambda, where the function URL's CORS settings apply.",
    )
