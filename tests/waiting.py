"""Waiting for things that happen in another thread or process: a port, a condition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nothing listens on now (for a child process to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T], what: str, timeout_s: float = 10) -> T:
    """`check()`'s first truthy result, polled until `timeout_s`; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def wait_for_port(port: int, what: str, alive: Callable[[], None] = lambda: None) -> None:
    """Until something accepts connections on 127.0.0.1:`port`. `alive` may assert that the
    process meant to listen there is still running, to fail with its reason, not a timeout."""

    def accepting() -> bool:
        alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(accepting, f"{what} to listen on port {port}")
