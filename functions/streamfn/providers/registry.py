"""Which providers exist, and each one built once, on first use, closed at shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streamfn.providers.base import Provider
from streamfn.settings import Settings

logger = logging.getLogger(__name__)


class UnknownProviderError(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown provider {name!r}; known providers: {', '.join(self.known)}")


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A configured provider. `build` imports the provider's SDK, so it runs on first use only."""

    name: str
    default_model: str
    build: Callable[[], Provider]


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

    async def aclose(self) -> None:
        built, self._built = self._built, {}
        for name, provider in built.items():
            try:
                await provider.aclose()
            except Exception:
                # Shutdown goes on for the other providers; the traceback is kept.
                logger.exception("closing provider %s failed", name)


def builtin_specs(settings: Settings) -> list[ProviderSpec]:
    """The providers streamfn ships, as configured by `settings`."""

    def echo() -> Provider:
        from streamfn.providers.echo import EchoProvider

        return EchoProvider(delay_s=settings.echo_delay_ms / 1000)

    return [ProviderSpec(name="echo", default_model="echo", build=echo)]
