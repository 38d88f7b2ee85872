from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.lambda_emulator import EmulatorThread
from local.url_cors import UrlCors

ROOT = Path(__file__).parents[2]


@pytest.fixture
def emulator() -> Iterator[Callable[..., EmulatorThread]]:
    """`emulator(timeout_s=..., **env)`: a function URL on loopback running functions/bootstrap."""
    started: list[EmulatorThread] = []

    def start(
        timeout_s: float = 60,
        cors: UrlCors | None = None,
        snapstart: bool = False,
        concurrency: int = 10,
        **env: str,
    ) -> EmulatorThread:
        # The child imports test apps from this checkout; STREAMFN_ settings of the developer's
        # shell are not passed on, so that tests see the defaults.
        base: dict[str, str | None] = {k: None for k in os.environ if k.startswith("STREAMFN_")}
        # Lambda's default is api_key; these tests are about the runtime, not auth.
        full_env: dict[str, Any] = {
            **base,
            "PYTHONPATH": str(ROOT),
            "STREAMFN_AUTH": "none",
            **env,
        }
        thread = EmulatorThread(
            env=full_env,
            timeout_s=timeout_s,
            cors=cors,
            snapstart=snapstart,
            concurrency=concurrency,
        ).__enter__()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.__exit__()
        assert thread.record.violations == [], thread.record.violations
