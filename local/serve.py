"""Serve streamfn locally on uvicorn: `make run`, or `python local/serve.py`.

HOST (default 127.0.0.1) and PORT (default 8000) choose the address; every other setting is a
`STREAMFN_` variable (see the README). With no provider configured, the offline echo provider
answers, so this works with no keys and no network.
"""

from __future__ import annotations

import logging
import os
import sys

import uvicorn
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from streamfn.app import create_app


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    # streamfn's own lines (one per request end, with its usage record) are JSON, as in Lambda;
    # uvicorn keeps its plain access log.
    handler = logging.StreamHandler()
    handler.setFormatter(LambdaPowertoolsFormatter(service="streamfn"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    app = create_app()
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    sys.stderr.write(
        f"streamfn: chat page at {base}/ (default provider: {app.state.providers.default})\n"
        f"          OpenAI API at {base}/v1, AI SDK stream at {base}/api/chat, "
        f"API docs at {base}/docs; Ctrl+C to stop\n"
    )
    # Long-lived streams should not hold up a restart for long.
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=5, log_level="info")


if __name__ == "__main__":
    main()
