"""streamfn servers in child processes (local/serve.py), as a fleet runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import free_port, wait_for_port

ROOT = Path(__file__).parents[1]


class ServerProcess:
    """local/serve.py on a free port, with only the `STREAMFN_` settings given in `env`."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFN_")}
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "local" / "serve.py")],
            env={**base, **env, "PORT": str(self.port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, "the server", self.alive)
        self.url = f"http://127.0.0.1:{self.port}"

    def alive(self) -> None:
        assert self.process.poll() is None, f"the server exited with {self.process.returncode}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
