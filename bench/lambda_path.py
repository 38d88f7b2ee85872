"""The Lambda path in `make bench`: cold start against a minimal runtime, import time per module
and per provider, and the per-token cost against uvicorn's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import servers

HERE = Path(__file__).parent
ROOT = HERE.parent
MINIMAL = HERE / "minimal_runtime" / "bootstrap"
WORDS = 2000
BODY = {"messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(WORDS))}]}
ENV = {"STREAMFN_ECHO_DELAY_MS": "0", "STREAMFN_AUTH": "none", "STREAMFN_USAGE_RECORDS": "false"}


LAYER = ROOT / "infra" / "layer" / "requirements.txt"
LAYER_VENV = ROOT / ".tools" / "bench-layer"


def layer_python() -> Path:
    """A Python with only the packages the Lambda layer locks (the same versions, built for this
    machine), so that cold starts import what Lambda would import and nothing of the dev tools
    (uvicorn, rich), which would otherwise be picked up along the way."""
    python = LAYER_VENV / "bin" / "python"
    stamp = LAYER_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != LAYER.read_text():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LAYER_VENV)], check=True)
        pins = [line.split()[0] for line in LAYER.read_text().splitlines() if "==" in line]
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
            check=True,
        )
        stamp.write_text(LAYER.read_text())
    return python


# The provider key as the template passes it: the name of an SSM parameter, read at init.
KEY_PARAMETER = "/streamfn/bench/openai-api-key"


@contextlib.contextmanager
def deployed() -> Iterator[tuple[dict[str, str | None], str]]:
    """The function's environment as template.yaml gives it, and an API key for it: its tables
    on a local DynamoDB (local/stack.py's moto server, which serves SSM too), auth on, the
    OpenAI provider on the fake upstream with its key in an SSM parameter. What a deployed
    cold start does at init and on its first request, bar the network's latency."""
    import boto3

    from local.stack import REGION, LocalStack

    with (
        servers.process([str(HERE / "upstream.py"), servers.PORT]) as upstream,
        LocalStack(
            parameters={
                "OpenAIBaseUrl": f"http://127.0.0.1:{upstream}/v1",
                "OpenAIApiKeyParameter": KEY_PARAMETER,
            }
        ) as stack,
    ):
        ssm = boto3.client(
            "ssm",
            endpoint_url=stack.url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        ssm.put_parameter(Name=KEY_PARAMETER, Value="bench", Type="SecureString")
        key = asyncio.run(stack.create_key("bench"))
        yield stack.function_env() | {"AWS_ENDPOINT_URL_SSM": stack.url}, key


def cold_start(env: dict[str, str | None], key: str | None, bootstrap: Path | None = None) -> float:
    """Seconds from a request reaching the function URL with no environment running (so one
    starts: a new runtime process) to its first body byte. Both runtimes (streamfn's and the
    minimal loop) run on the layer's packages, with `env`."""
    from local.lambda_emulator import EmulatorThread

    options: dict[str, Any] = {"bootstrap": bootstrap} if bootstrap else {}
    with EmulatorThread(env=env, python=layer_python(), **options) as fn:
        fn.call(fn.emulator.stop_runtime())
        return _first_byte(fn.url, "fast-5", key)


def restore_start(env: dict[str, str | None], key: str) -> float:
    """SnapStart's cold start in the emulator: seconds from a request reaching an environment
    parked at the snapshot point (`restore/next`) to its first body byte: the after-restore
    work (keys read again, the app rebuilt) and the invocation, not the init."""
    from local.lambda_emulator import EmulatorThread

    with EmulatorThread(env=env, snapstart=True, python=layer_python()) as fn:
        fn.wait_for("restore-asked", timeout_s=30)
        time.sleep(0.2)
        return _first_byte(fn.url, "fast-5", key)


def _first_byte(url: str, model: str, key: str | None) -> float:
    """Seconds from posting a question for `model` to the first body byte of a 200 answer."""
    body = {"model": model, "messages": [{"role": "user", "content": "cold"}]}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    started = time.perf_counter()
    with httpx.stream(
        "POST", f"{url}/chat/stream", json=body, headers=headers, timeout=60
    ) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read()[:300]!r}")
        for _ in response.iter_bytes():
            return time.perf_counter() - started
    raise RuntimeError("no body")


def _stream_seconds(url: str) -> float:
    started = time.perf_counter()
    with httpx.stream("POST", f"{url}/chat/stream", json=BODY, timeout=60) as response:
        for _ in response.iter_bytes():
            pass
    return time.perf_counter() - started


def per_token() -> tuple[float, float]:
    """Median seconds per token (echo, as fast as it goes) on uvicorn and through the Lambda
    emulator, each served from a thread of this process: the same client cost in both."""
    from local.lambda_emulator import EmulatorThread
    from streamfn.app import create_app
    from streamfn.settings import Settings
    from tests.conftest import ServerThread

    app = create_app(Settings(echo_delay_ms=0, usage_records=False, auth="none"))
    with ServerThread(app) as server, EmulatorThread(env=ENV) as fn:
        _stream_seconds(server.url), _stream_seconds(fn.url)  # warm both
        uvicorn_runs = [_stream_seconds(server.url) for _ in range(7)]
        lambda_runs = [_stream_seconds(fn.url) for _ in range(7)]
    return statistics.median(uvicorn_runs) / WORDS, statistics.median(lambda_runs) / WORDS


_IMPORT = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_times(statement: str) -> dict[str, float]:
    """Milliseconds each package takes to import under `statement`, by `-X importtime` in a
    fresh interpreter with the layer's packages (median of three): the cumulative time of each
    place the package is entered from another one, what it imports in turn included."""
    runs: list[dict[str, float]] = []
    for _ in range(3):
        done = subprocess.run(
            [str(layer_python()), "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "functions")},
        )
        lines = [m for m in map(_IMPORT.match, done.stderr.splitlines()) if m]
        totals: dict[str, float] = {}
        ancestors: list[tuple[int, str]] = []
        # The output lists each module after what it imported; reversed, parents come first.
        for match in reversed(lines):
            level, package = len(match[3]), match[4].split(".")[0]
            while ancestors and ancestors[-1][0] >= level:
                ancestors.pop()
            if all(p != package for _, p in ancestors):
                totals[package] = totals.get(package, 0) + int(match[2]) / 1000
            ancestors.append((level, package))
        runs.append(totals)
    names = set().union(*runs)
    return {n: statistics.median(r.get(n, 0.0) for r in runs) for n in names}
