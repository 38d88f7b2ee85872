"""Real servers for the tests, from Debian's packages, each started once per test session on a
free loopback port with its files in a throwaway directory: `redis` (Redis without
persistence) and `postgres` (PostgreSQL, trusting loopback, fsync off).

`make test` installs the packages when they are missing (see SYSTEM_PACKAGES in the Makefile);
where they cannot be installed, the tests that need them skip, except in CI, where they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
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

    def clear_of_minute_end(self, margin_s: float = 8) -> None:
        """Wait, if need be, so that a test counting one minute's requests stays inside it (on
        Redis's clock, which the limits use)."""
        seconds = int(self.cli("TIME").split()[0])
        if 60 - seconds % 60 < margin_s:
            time.sleep(60 - seconds % 60 + 0.2)


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


@dataclass
class SentinelRedis:
    """A Redis primary of its own, watched by one Redis Sentinel."""

    primary: RedisServer
    sentinel_port: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/streamfn/0"


@pytest.fixture(scope="session")
def sentinel_redis() -> Iterator[SentinelRedis]:
    directory = Path(tempfile.mkdtemp(prefix="streamfn-sentinel-"))
    port, sentinel_port = free_port(), free_port()
    primary = RedisServer(port, start_redis(directory, port), directory)
    config = directory / "sentinel.conf"  # the sentinel rewrites it: a file of its own
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor streamfn 127.0.0.1 {port} 1\n"
    )
    sentinel = subprocess.Popen(
        [_binary("redis-server", "redis-server"), str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def alive() -> None:
        assert sentinel.poll() is None, f"redis-server --sentinel exited with {sentinel.returncode}"

    try:
        wait_for_port(sentinel_port, "redis sentinel", alive)
        yield SentinelRedis(primary, sentinel_port)
    finally:
        for process in (sentinel, primary.process):
            process.terminate()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def sentinel(sentinel_redis: SentinelRedis) -> SentinelRedis:
    """The session's Sentinel-watched Redis, emptied for this test."""
    sentinel_redis.primary.flush()
    return sentinel_redis


def _postgres_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        message = (
            f"PostgreSQL's {name} is not installed (Debian's postgresql; `make test` installs it)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class PostgresServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://streamfn@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        log = self.directory / "postgres.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                _as_postgres(
                    [
                        _postgres_binary("postgres"),
                        "-D",
                        str(self.directory / "data"),
                        "-p",
                        str(self.port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={self.directory}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "max_connections=200",
                    ]
                ),
                stdout=out,
                stderr=out,
            )
        process = self.process

        def alive() -> None:
            if process.poll() is not None:
                tail = log.read_text(errors="replace").splitlines()[-5:]
                raise AssertionError(f"postgres exited with {process.returncode}: {tail}")

        wait_for_port(self.port, "postgres", alive)

    def stop(self) -> None:
        """A fast shutdown (what a restart does), by pg_ctl, which signals the postmaster itself
        and waits until it is gone. Signalling `runuser` instead is not enough: it passes the
        signal on and, if its child has not exited two seconds later, kills it ("Session
        terminated, killing shell... killed": util-linux's su-common.c, as seen here), which
        leaves the data directory locked for the next start."""
        if self.process is not None and self.process.poll() is None:
            pg_ctl = [_postgres_binary("pg_ctl"), "stop", "-D", str(self.directory / "data")]
            subprocess.run(
                _as_postgres([*pg_ctl, "-m", "fast", "-w", "-t", "30"]),
                check=True,
                capture_output=True,
            )
            self.process.wait(30)
        self.process = None

    def psql(self, sql: str) -> str:
        command = [_postgres_binary("psql"), self.url, "-At", "-c", sql]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    directory = Path(tempfile.mkdtemp(prefix="streamfn-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    initdb = [_postgres_binary("initdb"), "-D", str(directory / "data"), "-A", "trust"]
    subprocess.run(
        _as_postgres([*initdb, "-U", "streamfn", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    server = PostgresServer(free_port(), directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> PostgresServer:
    """The session's PostgreSQL, with streamfn's tables dropped for this test."""
    if postgres_server.process is None:
        postgres_server.start()  # a test stopped it
    postgres_server.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return postgres_server
