"""Which providers exist, and each one built once, on first use, closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlsplit

from streamfn.providers.base import Capabilities, Provider
from streamfn.providers.bedrock import CAPABILITIES as BEDROCK_CAPABILITIES
from streamfn.providers.bedrock import asked_for as bedrock_asked_for
from streamfn.providers.bedrock import enabled as bedrock_enabled
from streamfn.settings import Settings

logger = logging.getLogger(__name__)


# What turns on a built-in provider that is not configured.
_ENABLE = {
    "openai": "set OPENAI_API_KEY or OPENAI_BASE_URL",
    "anthropic": "set ANTHROPIC_API_KEY",
    "gemini": "set GEMINI_API_KEY (or GOOGLE_API_KEY)",
    "bedrock": "set AWS_REGION and AWS credentials (or AWS_BEARER_TOKEN_BEDROCK), or "
    "STREAMFN_BEDROCK_MODEL",
}


class UnknownProviderError(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        message = f"unknown provider {name!r}; known providers: {', '.join(self.known)}"
        if name in _ENABLE:
            message += f" ({name} is not configured: {_ENABLE[name]})"
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A configured provider. `build` imports the provider's SDK: the registry runs it when the
    app starts (`prepare`), in a worker thread."""

    name: str
    default_model: str
    build: Callable[[], Provider]
    capabilities: Capabilities = field(default_factory=Capabilities)
    models: tuple[str, ...] | None = None  # the only models it has; None: any it is asked for
    address: str | None = None  # a URL of its own to probe for reachability (Ollama, vLLM)
    prepared: bool = True  # built when the app starts; False: on first use


async def unreachable(url: str, timeout_s: float = 0.5) -> str | None:
    """Why nothing can be reached at `url`'s host and port, or None when something answers.

    A TCP connect only: it tells "nothing listens there" (the usual case of an Ollama that is
    not running) from "something does", without a request that could cost anything."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return f"nothing answers at {host}:{port}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


# What each kind of provider's API can take (see `Capabilities`).
JSON_OUTPUT = frozenset({"json_schema", "json_object"})
OPENAI_CAPABILITIES = Capabilities(  # response_format; reasoning_effort only
    reasoning_budget=False, output_formats=JSON_OUTPUT
)
# Structured output as output_config.format, a JSON schema only
# (https://platform.claude.com/docs/en/build-with-claude/structured-outputs).
ANTHROPIC_CAPABILITIES = Capabilities(
    efforts=frozenset({"low", "medium", "high", "xhigh", "max"}),  # output_config.effort
    min_reasoning_budget=1024,  # thinking.budget_tokens
    output_formats=frozenset({"json_schema"}),
)
# Ollama's /api/chat takes images as base64 only, has no tool_choice, and `think` is a boolean
# or, for the models that grade it, low/medium/high.
OLLAMA_CAPABILITIES = Capabilities(
    image_urls=False,
    forced_tool_choice=False,
    efforts=frozenset({"low", "medium", "high"}),
    reasoning_budget=False,
    output_formats=JSON_OUTPUT,  # `format`: "json" or a JSON schema
)
# Gemini takes images inline (`inlineData`): its `fileData` is for files uploaded to its Files
# API, not URLs of the web. Effort is Gemini 3's thinkingLevel; a budget, thinkingBudget.
GEMINI_CAPABILITIES = Capabilities(  # JSON output: responseMimeType and responseJsonSchema
    image_urls=False,
    efforts=frozenset({"minimal", "low", "medium", "high"}),
    output_formats=JSON_OUTPUT,
)


class ProviderRegistry:
    def __init__(self, specs: Iterable[ProviderSpec], default: str) -> None:
        self._specs = {spec.name: spec for spec in specs}
        if default not in self._specs:
            raise UnknownProviderError(default, self._specs)
        self.default = default
        self._built: dict[str, Provider] = {}

    @property
    def specs(self) -> list[ProviderSpec]:
        return list(self._specs.values())

    def spec(self, name: str | None) -> ProviderSpec:
        """The spec for `name` (the default when None); `UnknownProviderError` otherwise."""
        try:
            return self._specs[name or self.default]
        except KeyError:
            raise UnknownProviderError(name or self.default, self._specs) from None

    def get(self, name: str) -> Provider:
        provider = self._built.get(name)
        if provider is None:
            provider = self._built[name] = self.spec(name).build()
            logger.info("provider %s ready", name)
        return provider

    async def prepare(self) -> None:
        """Build every provider now, in a worker thread: importing an SDK takes up to a second
        or two, and done on first use it would stall every other stream meanwhile."""
        for spec in self._specs.values():
            if (spec.prepared or spec.name == self.default) and spec.name not in self._built:
                self._built[spec.name] = await asyncio.to_thread(spec.build)
                logger.info("provider %s ready", spec.name)

    async def aclose(self) -> None:
        built, self._built = self._built, {}
        for name, provider in built.items():
            try:
                await provider.aclose()
            except Exception:
                # Shutdown goes on for the other providers; the traceback is kept.
                logger.exception("closing provider %s failed", name)


def builtin_specs(settings: Settings) -> list[ProviderSpec]:
    """The providers streamfn ships, as configured by `settings`.

    `echo` and `ollama` (which needs no key) are always there; `openai`, `anthropic` and
    `gemini` once they have a key or a base URL; `bedrock` in Lambda and where AWS credentials
    are found (`providers.bedrock.enabled`); each OpenAI-compatible server listed in the
    settings by its name. Each `build` imports its module (and Anthropic's its SDK); only
    configured providers are here, so an unconfigured one costs no start-up time.
    """

    def echo() -> Provider:
        from streamfn.providers.echo import EchoProvider

        return EchoProvider(delay_s=settings.echo_delay_ms / 1000)

    def openai_chat(
        name: str,
        api_key: str | None,
        base_url: str | None,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"],
        responses: bool,
        organization: str | None = None,
        project: str | None = None,
    ) -> Callable[[], Provider]:
        def build() -> Provider:
            from streamfn.providers.openai_chat import OpenAIChatProvider

            return OpenAIChatProvider(
                name=name,
                api_key=api_key,
                base_url=base_url,
                max_tokens_param=max_tokens_param,
                total_timeout_s=settings.total_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                max_connections=settings.upstream_connections,
                reasoning_back=not is_openai(base_url),
                responses=responses,
                organization=organization,
                project=project,
            )

        return build

    def anthropic() -> Provider:
        from streamfn.providers.anthropic_messages import AnthropicProvider

        key = settings.anthropic_api_key
        return AnthropicProvider(
            api_key=key.get_secret_value() if key else None,
            base_url=settings.anthropic_base_url,
            default_max_tokens=settings.anthropic_max_tokens,
            total_timeout_s=settings.total_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_retries=0,  # streamfn retries, and falls back (streamfn.resilience)
            max_connections=settings.upstream_connections,
        )

    def bedrock() -> Provider:
        from streamfn.providers.bedrock.provider import BedrockProvider

        token = settings.bedrock_bearer_token
        return BedrockProvider(
            region=settings.aws_region,
            endpoint=settings.bedrock_endpoint_url,
            bearer_token=token.get_secret_value() if token else None,
            total_timeout_s=settings.total_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections=settings.upstream_connections,
            resolve_now=bedrock_asked_for(settings),  # then built in the worker thread
        )

    def gemini() -> Provider:
        from streamfn.providers.gemini import GeminiProvider

        key = settings.gemini_api_key
        return GeminiProvider(
            api_key=key.get_secret_value() if key else None,
            base_url=settings.gemini_base_url,
            total_timeout_s=settings.total_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections=settings.upstream_connections,
        )

    def ollama() -> Provider:
        from streamfn.providers.ollama_chat import OllamaProvider

        key = settings.ollama_api_key
        return OllamaProvider(
            host=settings.ollama_host,
            api_key=key.get_secret_value() if key else None,
            total_timeout_s=settings.total_timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_connections=settings.upstream_connections,
        )

    specs = [ProviderSpec("echo", "echo", echo, models=("echo",))]
    if settings.openai_api_key or settings.openai_base_url:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        base_url = settings.openai_base_url
        param = max_tokens_param(base_url)
        responses = settings.openai_responses
        if responses is None:  # OpenAI's own API serves it; of the others, few do
            responses = is_openai(base_url)
        specs.append(
            ProviderSpec(
                "openai",
                settings.openai_model,
                openai_chat(
                    "openai",
                    key,
                    base_url,
                    param,
                    responses,
                    settings.openai_organization,
                    settings.openai_project,
                ),
                replace(OPENAI_CAPABILITIES, responses=responses),
                address=base_url,
            )
        )
    if settings.anthropic_api_key or settings.anthropic_base_url:
        specs.append(
            ProviderSpec(
                "anthropic",
                settings.anthropic_model,
                anthropic,
                ANTHROPIC_CAPABILITIES,
                address=settings.anthropic_base_url,
            )
        )
    if settings.gemini_api_key or settings.gemini_base_url:
        specs.append(
            ProviderSpec(
                "gemini",
                settings.gemini_model,
                gemini,
                GEMINI_CAPABILITIES,
                address=settings.gemini_base_url,
            )
        )
    if bedrock_enabled(settings):
        specs.append(
            ProviderSpec(
                "bedrock",
                settings.bedrock_model,
                bedrock,
                BEDROCK_CAPABILITIES,
                address=settings.bedrock_endpoint_url,
                # Always there in Lambda (the function's role): built on first use unless
                # configured by name, when its credentials are resolved at start too.
                prepared=bedrock_asked_for(settings),
            )
        )
    specs.append(
        ProviderSpec(
            "ollama",
            settings.ollama_model,
            ollama,
            OLLAMA_CAPABILITIES,
            address=ollama_base_url(settings.ollama_host),
            # There by default, used by few: built on first use unless OLLAMA_HOST names one.
            prepared="ollama_host" in settings.model_fields_set,
        )
    )
    for compatible in settings.openai_compatible:
        key = os.environ.get(compatible.api_key_env) if compatible.api_key_env else None
        specs.append(
            ProviderSpec(
                compatible.name,
                compatible.default_model,
                openai_chat(
                    compatible.name,
                    key,
                    compatible.base_url,
                    compatible.max_tokens_param,
                    compatible.responses,
                ),
                replace(OPENAI_CAPABILITIES, responses=compatible.responses),
                address=compatible.base_url,
            )
        )
    return specs


def ollama_base_url(host: str) -> str:
    """OLLAMA_HOST as Ollama reads it: `host`, `host:port` or a URL; port 11434 by default."""
    url = host if "://" in host else f"http://{host}"
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 11434)
    hostname = parts.hostname or "127.0.0.1"
    if hostname == "0.0.0.0":  # a listen address: reach it on loopback
        hostname = "127.0.0.1"
    return f"{parts.scheme}://{hostname}:{port}{parts.path.rstrip('/')}"


def max_tokens_param(base_url: str | None) -> Literal["max_tokens", "max_completion_tokens"]:
    """OpenAI's own API has replaced max_tokens with max_completion_tokens (its reasoning models
    reject max_tokens); the servers that imitate it mostly know only max_tokens."""
    return "max_completion_tokens" if is_openai(base_url) else "max_tokens"


def is_openai(base_url: str | None) -> bool:
    """Whether `base_url` is OpenAI's own API rather than a server imitating it."""
    return base_url is None or urlsplit(base_url).hostname == "api.openai.com"


def default_provider(settings: Settings, specs: Iterable[ProviderSpec]) -> str:
    """The configured default, else openai, anthropic or gemini (the first configured), else
    echo."""
    if settings.default_provider:
        return settings.default_provider
    names = {spec.name for spec in specs}
    return next((n for n in ("openai", "anthropic", "gemini") if n in names), "echo")
