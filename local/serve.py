"""Serve streamfn locally on uvicorn: `make run`, or `python local/serve.py`.

HOST (default 127.0.0.1) and PORT (default 8000) choose the address, WORKERS (default 1) how many
uvicorn worker processes serve it; every other setting is a `STREAMFN_` variable (see the
README). With no provider configured, the offline echo provider
answers, so this works with no keys and no network.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

import uvicorn
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from streamfn.app import create_app
from streamfn.settings import Settings


def per_worker(settings: Settings) -> str | None:
    """Why several workers would not serve as one server, if they would not.

    Without a shared Redis, limits are counted in each process: N workers would admit N times
    them. (Keys, usage records and resumable streams are in files every worker shares.) Limits
    are in play when defaults are set, and whenever keys are checked, since a key may carry its
    own (`streamfn keys create --rpm ...`)."""
    if settings.redis_url:
        return None
    limited = settings.requests_per_minute or settings.concurrent_streams
    if limited or settings.tokens_per_day or settings.auth_modes() != frozenset({"none"}):
        return (
            "several workers count limits each on its own without a shared Redis: set "
            "STREAMFN_REDIS_URL (redis://host:6379/0), or run one worker"
        )
    return None


def shared_metrics_directory() -> str:
    """A directory of its own for prometheus_client's multiprocess mode, removed at exit: with
    several workers, each counts in its own memory and a scrape reaches one of them, unless
    their counts are kept in one directory (the workers inherit the variable naming it)."""
    directory = tempfile.mkdtemp(prefix="streamfn-prometheus-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    sys.stderr.write(f"          Prometheus counts of every worker in {directory}\n")
    return directory


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    # streamfn's own lines (one per request end, with its usage record) are JSON, as in Lambda;
    # uvicorn keeps its plain access log.
    handler = logging.StreamHandler()
    handler.setFormatter(LambdaPowertoolsFormatter(service="streamfn"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    workers = int(os.environ.get("WORKERS", "1") or "1")
    settings = Settings()
    if workers > 1 and (why := per_worker(settings)) is not None:
        sys.exit(f"streamfn: WORKERS={workers}: {why}")
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    sys.stderr.write(
        f"streamfn: chat page at {base}/ (default provider: {app.state.providers.default})\n"
        f"          OpenAI API at {base}/v1, AI SDK stream at {base}/api/chat, "
        f"API docs at {base}/docs; Ctrl+C to stop\n"
    )
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "info"}
    # Long-lived streams should not hold up a restart for long.
    options["timeout_graceful_shutdown"] = 5
    if workers > 1:
        # Each worker process builds its own app from the same environment.
        sys.stderr.write(f"          {workers} worker processes\n")
        if settings.metrics == "prometheus" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics_directory()
        uvicorn.run("streamfn.app:create_app", factory=True, workers=workers, **options)
    else:
        uvicorn.run(app, **options)


if __name__ == "__main__":
    main()
