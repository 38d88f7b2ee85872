"""Who may call: API keys (and, later, JWTs), checked before a request reaches any provider."""

from __future__ import annotations

from streamfn.auth.gate import AuthMiddleware, Gate, Identity, Unauthorized, open_gate

__all__ = ["AuthMiddleware", "Gate", "Identity", "Unauthorized", "open_gate"]
