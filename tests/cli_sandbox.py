"""Command-line clients (Claude Code, Codex) run as themselves against `local/serve.py` (what
`make run` runs), offline: the server runs in a network namespace of its own that has nothing
but loopback, and the client joins it, so a request anywhere else fails rather than leaves the
machine. Where namespaces cannot be made (they need root), both run on this machine's loopback
and the client is kept off the network by its own settings alone.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.waiting import free_port

ROOT = Path(__file__).parents[1]

# Brings up loopback in a new network namespace (which starts with it down), then runs the
# server: what `ip link set lo up` does, without needing iproute2.
_LOOPBACK_UP = """
import fcntl, runpy, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, struct.pack("16sh", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 1))
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@functools.cache
def isolated() -> bool:
    """Whether this process may make network namespaces (root may)."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("nsenter") is None:
        return False
    return subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0


class OfflineServer:
    """local/serve.py, in a network namespace with loopback only when `isolated()`, with only
    the `STREAMFN_` settings given in `env`; its output in `directory`/server.log."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = directory / "server.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFN_")}
        serve = str(ROOT / "local" / "serve.py")
        command = [sys.executable, serve]
        if isolated():
            command = ["unshare", "--net", "--", sys.executable, "-c", _LOOPBACK_UP, serve]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                env={**base, **env, "PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while b"Uvicorn running on" not in self.log.read_bytes():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        """`command`, in the server's network namespace when it has one of its own."""
        if isolated():
            command = ["nsenter", f"--net=/proc/{self.process.pid}/ns/net", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False, **options)

    def requests(self) -> list[str]:
        """The access log's request lines: `POST /v1/messages?beta=true 200`."""
        lines = self.log.read_text().splitlines()
        return [
            " ".join(line.split('"')[1].split()[:2]) + " " + line.split('"')[2].split()[0]
            for line in lines
            if line.startswith("INFO:") and ' HTTP/1.1" ' in line
        ]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@contextmanager
def offline_servers(directory: Path) -> Iterator[Callable[..., OfflineServer]]:
    """`start(**env)` starts an OfflineServer with echo answering fast, no usage records and the
    streams log in `directory`, and `env` on top; every server started is stopped on exit."""
    servers: list[OfflineServer] = []

    def start(**env: str) -> OfflineServer:
        settings = {
            "STREAMFN_ECHO_DELAY_MS": "1",
            "STREAMFN_USAGE_RECORDS": "false",
            "STREAMFN_STREAMS_DB": str(directory / "streams.sqlite3"),
            **env,
        }
        servers.append(OfflineServer(directory, settings))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
