"""Shared fixtures: a real uvicorn server on a free loopback port, and SSE reading helpers."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

pytest_plugins = ["tests.fakes.aws", "tests.fakes.servers"]  # `moto`; `redis`


_SCRATCH = Path(tempfile.mkdtemp(prefix="streamfn-tests-"))


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001
    # Apps built with default settings keep usage records and stream logs in files under the
    # user's home; the tests' (servers started in subprocesses too) go to a throwaway directory.
    os.environ["STREAMFN_USAGE_DB"] = str(_SCRATCH / "usage.sqlite3")
    os.environ["STREAMFN_STREAMS_DB"] = str(_SCRATCH / "streams.sqlite3")
    # Nothing of the developer's AWS setup: with it, `bedrock` would be offered by every app
    # (providers.bedrock.enabled), and botocore's chain would reach for real credentials and
    # the metadata service. Tests that want AWS set their own (moto's, the fake Bedrock's).
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    os.environ["AWS_CONFIG_FILE"] = str(_SCRATCH / "aws-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(_SCRATCH / "aws-credentials")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def pytest_unconfigure(config: pytest.Config) -> None:  # noqa: ARG001
    shutil.rmtree(_SCRATCH, ignore_errors=True)


class ServerThread:
    """uvicorn serving `app` from a background thread, on a socket bound to 127.0.0.1:0.

    Streaming and disconnects are only visible through a real server: Starlette's TestClient and
    httpx's ASGITransport buffer the whole body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        # loop="asyncio": uvicorn's default ("auto") would install uvloop's policy for the whole
        # test process, changing every other test's loop; `make run` (local/serve.py) uses
        # uvloop, and tests/integration/test_local_serve.py runs that.
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, loop="asyncio"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[ASGIApp], str]]:
    """`serve(app)` starts a real server for `app` and returns its base URL."""
    servers: list[ServerThread] = []

    def start(app: ASGIApp) -> str:
        server = ServerThread(app).__enter__()
        servers.append(server)
        return server.url

    yield start
    for server in reversed(servers):
        server.__exit__()
