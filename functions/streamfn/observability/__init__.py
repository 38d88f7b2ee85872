"""Telemetry exporters behind `streamfn.telemetry`: OpenTelemetry over OTLP/HTTP (`otel`, in
the GenAI conventions of `genai`) and Prometheus (`prometheus`). Each is imported only when
configured; this package itself imports neither, nor their libraries.

`flush` is for a host that freezes the process between requests (the Lambda runtime): it sends
what the exporters still hold before the environment is frozen.
"""

from __future__ import annotations

from typing import Any

from streamfn.observability.trail import Attempt, Trail

__all__ = ["Attempt", "Trail", "flush"]


async def flush(app: Any, timeout_s: float = 3.0) -> None:
    """Export what `app`'s telemetry holds, waiting at most `timeout_s`: the spans and metrics
    of the requests it has finished. A no-op for an app without OTLP export (or not a streamfn
    app at all). The Lambda runtime awaits it after each invocation, before it asks for the
    next one."""
    state = getattr(app, "state", None)
    telemetry = getattr(state, "telemetry", None)
    if telemetry is not None:
        await telemetry.flush(timeout_s)
