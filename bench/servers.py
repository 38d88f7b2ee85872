"""The processes `make bench` starts, each on a free loopback port: the fake upstreams, the
targets (bench/targets.py), and the fleet's Redis (Debian's redis-server without persistence,
as tests/fakes/servers.py starts it for the tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
PORT = "{port}"  # in a command: the free port the process is given


class NotListening(RuntimeError):
    """A process started but never listened on its port."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    port: int, child: subprocess.Popen[bytes] | None = None, timeout_s: float = 30
) -> None:
    ends = time.monotonic() + timeout_s
    while time.monotonic() < ends:
        if child is not None and child.poll() is not None:
            raise NotListening(f"exited with {child.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise NotListening(f"nothing listening on {port} after {timeout_s:.0f} s")


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str] | None = None) -> Iterator[int]:
    """`python command...` in a child process (run from the repository's root, so that `-m
    tests.fakes.x` works), PORT in `command` replaced by a free port; yields the port once
    something listens there."""
    port = free_port()
    argv = [sys.executable, *(str(port) if part == PORT else part for part in command)]
    child = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})})
    try:
        wait_ready(port, child)
        yield port
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@dataclass
class Redis:
    port: int
    child: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_s(self) -> float:
        """CPU seconds the server has used, its threads included (/proc/PID/stat's utime and
        stime, fields 14 and 15, in clock ticks)."""
        fields = Path(f"/proc/{self.child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def flush(self) -> None:
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run([cli, "-p", str(self.port), "FLUSHALL"], check=True, capture_output=True)


def redis_binary() -> str | None:
    return shutil.which("redis-server", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin")


@contextlib.contextmanager
def redis() -> Iterator[Redis]:
    """A throwaway Redis: no snapshots, no append-only file, its directory removed after."""
    binary = redis_binary()
    if binary is None:
        raise NotListening("redis-server is not installed (Debian's redis-server)")
    directory = tempfile.mkdtemp(prefix="streamfn-bench-redis-")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", directory]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, child)
        yield Redis(port, child)
    finally:
        child.terminate()
        child.wait(10)
        shutil.rmtree(directory, ignore_errors=True)
