"""`make run`'s entrypoint as a user starts it: a child process printing the demo page's URL."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_local_server_prints_its_url_and_streams_with_echo() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFN_")}
    env |= {"PORT": str(port), "STREAMFN_ECHO_DELAY_MS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "local" / "serve.py")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        # The URL is the first line, printed before uvicorn starts listening.
        first_line = proc.stderr.readline()
        match = re.search(r"demo page at (http://\S+)", first_line)
        assert match, first_line
        url = match.group(1)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}healthz").status_code == 200:
                    break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the local server did not start listening"
                time.sleep(0.1)
        assert url == f"http://127.0.0.1:{port}/"
        assert "default provider: echo" in first_line
        assert httpx.get(url).status_code == 200
        body = {"messages": [{"role": "user", "content": "from the child"}]}
        reply = httpx.post(f"{url}chat/stream", json=body, timeout=10)
        assert "data: from\n" in reply.text
        assert "data:  the\n" in reply.text
        assert reply.text.endswith("event: done\ndata: stop\n\n")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
