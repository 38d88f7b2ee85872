"""LLM providers behind one protocol, built lazily by a registry."""

from __future__ import annotations

from streamfn.providers.base import Provider
from streamfn.providers.registry import ProviderRegistry, ProviderSpec, UnknownProviderError

__all__ = ["Provider", "ProviderRegistry", "ProviderSpec", "UnknownProviderError"]
