"""Real servers for the tests, from Debian's packages, each started once per test session on a
free loopback port with its files in a throwaway directory: `redis` (Redis without
persistence).

`make test` installs the packages when they are missing (see SYSTEM_PACKAGES in the Makefile);
where they cannot be installed, the tests that need them skip, except in CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.waiting import free_port, wait_for_port


def _binary(name: str, package: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin")
    if found is None:
        message = f"{name} is not installed (Debian's {package}; `make test` installs it as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        """A `redis-cli` command's output, against this server."""
        command = [shutil.which("redis-cli") or "redis-cli", "-p", str(self.port), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def flush(self) -> None:
        self.cli("FLUSHALL")


def start_redis(directory: Path, port: int) -> subprocess.Popen[bytes]:
    binary = _binary("redis-server", "redis-server")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def alive() -> None:
        assert process.poll() is None, f"redis-server exited with {process.returncode}"

    wait_for_port(port, "redis-server", alive)
    return process


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="streamfn-redis-"))
    port = free_port()
    server = RedisServer(port, start_redis(directory, port), directory)
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server
