"""Buffered invocations through Mangum, for API Gateway HTTP APIs and BUFFERED function URLs.

Handler: `streamfn.awslambda.buffered.handler`. Non-streaming routes work as usual; a streaming
route returns its whole SSE body at the end. Use the streaming runtime (functions/bootstrap)
wherever tokens should arrive as they are generated.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

_adapter: Mangum | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _adapter
    if _adapter is None:  # built on the first invocation, then reused by every later one
        from streamfn.app import create_app
        from streamfn.awslambda.secrets import load_secrets

        load_secrets()
        # lifespan "off": Mangum would otherwise start and shut the app down on every
        # invocation, closing the provider clients that should live as long as the process.
        _adapter = Mangum(create_app(), lifespan="off")
    return _adapter(event, context)
