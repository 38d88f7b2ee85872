"""Which provider and model a model name, as a client protocol gives it, means.

Every protocol whose body names one `model` (OpenAI's Chat Completions and Responses APIs,
Anthropic's Messages API) routes it here, the same way:

1. `STREAMFN_MODEL_ALIASES` first: a name a client insists on (Claude Code's main and small
   models, a Codex profile's) becomes the `provider/model` it maps to. Exact names are tried
   before patterns (`claude-*`, fnmatch's), and patterns in the order given; one step only, so an
   alias never leads to another.
2. `provider/model`, when `provider` is a configured provider's name; a provider's name alone
   (its default model).
3. A bare model: the provider that lists it among its models; else the provider of its family
   (`claude-*` Anthropic's, `gemini-*` Gemini's), when that one is configured; else the default
   provider's. A prefix that names no provider is part of the model's own name
   (`meta-llama/Llama-3.1-8B` on vLLM).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

# Names whose family says whose they are: sent to that provider when it is configured.
FAMILIES = (("claude-", "anthropic"), ("gemini-", "gemini"))


@dataclass(frozen=True, slots=True)
class Listed:
    """What routing needs of a configured provider: its name and the models it lists, if it
    lists any (None: any model it is asked for)."""

    name: str
    models: tuple[str, ...] | None = None


class ModelRoutes:
    """`target(name)`: the provider (None: the default) and model (None: its default) that a
    client's model name means."""

    def __init__(self, aliases: Mapping[str, str], providers: Iterable[Listed]) -> None:
        self._exact = {k: v for k, v in aliases.items() if not _is_pattern(k)}
        self._patterns = [(k, v) for k, v in aliases.items() if _is_pattern(k)]
        self._providers = list(providers)
        self._names = {p.name for p in self._providers}

    def alias(self, name: str) -> str:
        """`name` as STREAMFN_MODEL_ALIASES maps it (itself when no alias matches)."""
        if name in self._exact:
            return self._exact[name]
        for pattern, target in self._patterns:
            if fnmatchcase(name, pattern):
                return target
        return name

    def target(self, name: str | None) -> tuple[str | None, str | None]:
        if not name:
            return None, None
        name = self.alias(name)
        provider, slash, model = name.partition("/")
        if slash and provider in self._names:
            return provider, model or None
        if name in self._names:
            return name, None
        for listed in self._providers:
            if listed.models is not None and name in listed.models:
                return listed.name, name
        for prefix, family in FAMILIES:
            if name.startswith(prefix) and family in self._names:
                return family, name
        return None, name


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")
