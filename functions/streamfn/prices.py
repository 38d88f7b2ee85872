"""What a request cost: `cost_usd`, from the provider, the model and the token counts.

Prices are genai-prices' (https://github.com/pydantic/genai-prices): the providers' price lists
as data, shipped in the package and kept up to date by its releases, so nothing is fetched at
run time. A streamfn provider's models are looked up among the models of the genai-prices
provider that bills them (`catalogs`):

- `openai`, `anthropic`, `gemini`: OpenAI's, Anthropic's and Google's own, when they are sent to
  their own API; sent elsewhere (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL),
  the provider whose API that URL is, as for an OpenAI-compatible server: Groq, OpenRouter,
  Together, DeepSeek, Mistral, ... (genai-prices knows them by their API's URL);
- `bedrock`: AWS's, which knows Bedrock's model and inference profile ids
  (`us.anthropic.claude-haiku-4-5-20251001-v1:0`, `global.`..., foundation-model ARNs), each at
  AWS's price for it (for recent Claude models, a geographic profile's is 10 % over a global
  one's);
- anything else (a server on this machine or a private network, Ollama, echo): no price.

A model the catalog does not know has no price either: `cost_usd` is then None (`null` on the
wire), never a guess. Cached input is priced as the provider prices it, reads and writes apart
(`cache_read_tokens`, `cache_write_tokens`: both part of `input_tokens`, as in streamfn's
`Usage`; cache writes at the five-minute rate, as streamfn's usage does not say which of
Anthropic's two was written); reasoning is output (`output_reasoning_tokens`, part of
`output_tokens`).

`STREAMFN_PRICES` overrides or adds prices per `provider/model` (exact names first, then
patterns in order, as STREAMFN_MODEL_ALIASES): prices in USD per million tokens
(`{"input_mtok": 3, "output_mtok": 15, "cache_read_mtok": 0.3, "cache_write_mtok": 3.75}`), a
genai-prices model to price it as (`"openai"`: the same model name at OpenAI; `"groq/llama-3.3-
70b-versatile"`), or null (no price).

genai-prices' data (a few hundred milliseconds to import and build, about 5 MB) is loaded in a
thread of its own when a configured provider is priced by it (`preload`), never on the event
loop; a request that comes before it is ready waits for it (`prepare`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

from streamfn.chunks import Usage

if TYPE_CHECKING:
    from streamfn.settings import Settings

logger = logging.getLogger(__name__)

_MILLION = Decimal(1_000_000)
# Distinct (provider, model) lookups remembered; past it they start over (model names come
# from requests, so they are bounded here, not by what clients send).
_REMEMBERED = 4096
_PATTERN = frozenset("*?[")  # what makes a STREAMFN_PRICES name a pattern (fnmatch)


@dataclass(frozen=True, slots=True)
class PricedUsage(Usage):
    """`Usage` with what it cost, in USD: None where the price is not known."""

    cost_usd: float | None = None


def cost_of(usage: Usage) -> float | None:
    """What `usage` cost, in USD, if it was priced (streamfn.usage.Tally prices every stream's
    final usage); None when it was not, or its price is not known."""
    return usage.cost_usd if isinstance(usage, PricedUsage) else None


def usd(cost: float) -> str:
    """`cost` as a plain decimal number (never in exponent form, as 1e-07 would be)."""
    return format(Decimal(repr(cost)), "f")


@dataclass(frozen=True, slots=True)
class Rates:
    """A model's own prices (STREAMFN_PRICES), in USD per million tokens; cache reads and
    writes cost what input does unless they have prices of their own."""

    input_mtok: Decimal
    output_mtok: Decimal
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        read = usage.cached_input_tokens or 0
        written = usage.cache_creation_input_tokens or 0
        fresh = max(usage.input_tokens - read - written, 0)
        total = (
            fresh * self.input_mtok
            + read * (self.input_mtok if self.cache_read_mtok is None else self.cache_read_mtok)
            + written
            * (self.input_mtok if self.cache_write_mtok is None else self.cache_write_mtok)
            + usage.output_tokens * self.output_mtok
        )
        return total / _MILLION


@dataclass(frozen=True, slots=True)
class Catalog:
    """Where genai-prices has a model's price: its provider (by id, or by the URL of its API)
    and the model's name there."""

    model: str
    provider_id: str | None = None
    api_url: str | None = None


Price: TypeAlias = Rates | Catalog | None
Override: TypeAlias = Rates | str | None  # a STREAMFN_PRICES value, as settings hold it


def _own_api(base_url: str | None, host: str) -> bool:
    return base_url is None or urlsplit(base_url).hostname == host


def catalogs(settings: Settings) -> dict[str, tuple[str | None, str | None]]:
    """Each streamfn provider's genai-prices provider: (its id, or None and the URL of the API
    it is sent to). Providers not named have no price."""
    out: dict[str, tuple[str | None, str | None]] = {
        "bedrock": ("aws", None),
    }
    for name, provider_id, base_url, host in (
        ("openai", "openai", settings.openai_base_url, "api.openai.com"),
        ("anthropic", "anthropic", settings.anthropic_base_url, "api.anthropic.com"),
        ("gemini", "google", settings.gemini_base_url, "generativelanguage.googleapis.com"),
    ):
        out[name] = (provider_id, None) if _own_api(base_url, host) else (None, base_url)
    for compatible in settings.openai_compatible:
        out[compatible.name] = (None, compatible.base_url)
    return out


class Prices:
    """The prices of one process's providers' models: STREAMFN_PRICES, then genai-prices."""

    def __init__(
        self,
        overrides: Mapping[str, Override] | None = None,
        providers: Mapping[str, tuple[str | None, str | None]] | None = None,
    ) -> None:
        self._overrides = dict(overrides or {})
        self._patterns = [(k, v) for k, v in self._overrides.items() if _PATTERN & set(k)]
        self._providers = dict(providers or {})
        self._lock = threading.Lock()
        self._loaded = False
        self._unknown: set[tuple[str, str]] = set()  # not in the catalog (logged once)

    @classmethod
    def from_settings(cls, settings: Settings) -> Prices:
        overrides: dict[str, Override] = {
            name: value
            if value is None or isinstance(value, str)
            else Rates(
                value.input_mtok, value.output_mtok, value.cache_read_mtok, value.cache_write_mtok
            )
            for name, value in settings.prices.items()
        }
        return cls(overrides, catalogs(settings))

    def price(self, provider: str, model: str) -> Price:
        """Where `provider/model`'s price comes from, if it has one."""
        name = f"{provider}/{model}"
        if name in self._overrides:
            found = self._overrides[name]
        else:
            for pattern, value in self._patterns:
                if fnmatchcase(name, pattern):
                    found = value
                    break
            else:
                provider_id, api_url = self._providers.get(provider, (None, None))
                if provider_id is None and api_url is None:
                    return None
                return Catalog(model, provider_id, api_url)
        if isinstance(found, str):  # a genai-prices provider id, and maybe its model
            provider_id, _, other = found.partition("/")
            return Catalog(other or model, provider_id)
        return found

    def preload(self, providers: Iterable[str]) -> None:
        """Start loading genai-prices' data in a thread of its own if any of `providers` is
        priced by it, so that no request waits for it (`prepare` waits for what is left)."""
        if not self._loaded and any(
            self._providers.get(p, (None, None)) != (None, None) for p in providers
        ):
            threading.Thread(target=self._load, name="genai-prices", daemon=True).start()

    async def prepare(self, provider: str, model: str) -> None:
        """Load genai-prices, in a worker thread, if `provider/model` is priced by it and it
        is not loaded yet."""
        if not self._loaded and isinstance(self.price(provider, model), Catalog):
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        with self._lock:
            if not self._loaded:
                from genai_prices import data_snapshot

                data_snapshot.get_snapshot()  # the bundled data, built on first use
                self._loaded = True

    def cost(self, provider: str, model: str, usage: Usage, *, at: float) -> float | None:
        """What `usage` of `provider/model` cost, in USD, at Unix time `at`; None when its
        price is not known."""
        found = self.price(provider, model)
        if found is None:
            return None
        if isinstance(found, Rates):
            return float(found.cost(usage))
        return self._catalog_cost(found, usage, at)

    def _catalog_cost(self, found: Catalog, usage: Usage, at: float) -> float | None:
        key = (found.provider_id or found.api_url or "", found.model)
        if key in self._unknown:
            return None
        if not self._loaded:  # `prepare` loads it first, as a rule
            self._load()
        from genai_prices import Usage as Counts
        from genai_prices import calc_price

        counts = Counts(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_creation_input_tokens,
            output_reasoning_tokens=usage.reasoning_tokens,
        )
        when = datetime.fromtimestamp(at, UTC)
        try:
            if found.provider_id is not None:
                calculated = calc_price(
                    counts, found.model, provider_id=found.provider_id, genai_request_timestamp=when
                )
            else:
                calculated = calc_price(
                    counts,
                    found.model,
                    provider_api_url=found.api_url,
                    genai_request_timestamp=when,
                )
        except LookupError as exc:
            if len(self._unknown) >= _REMEMBERED:
                self._unknown.clear()
            self._unknown.add(key)
            logger.info("no price for %s: %s", found.model, exc)
            return None
        except ValueError as exc:  # counts that do not add up (more cached than input, ...)
            logger.warning("%s not priced: %s (%s)", found.model, exc, usage)
            return None
        return float(calculated.total_price)

    def priced(self, provider: str, model: str, usage: Usage, *, at: float) -> Usage:
        """`usage` with its cost (a `PricedUsage`), or as it is when its price is not known."""
        cost = self.cost(provider, model, usage, at=at)
        if cost is None:
            return usage
        return PricedUsage(
            usage.input_tokens,
            usage.output_tokens,
            usage.estimated,
            usage.reasoning_tokens,
            usage.cached_input_tokens,
            usage.cache_creation_input_tokens,
            cost_usd=cost,
        )

    def most(
        self, provider: str, model: str, input_tokens: int, output_tokens: int, *, at: float
    ) -> float | None:
        """The most a request of `provider/model` with about `input_tokens` of input and at
        most `output_tokens` of output can cost (none of it cached), in USD; None when its
        price is not known."""
        return self.cost(provider, model, Usage(input_tokens, output_tokens), at=at)
