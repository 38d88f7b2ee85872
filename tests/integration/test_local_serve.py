"""`make run`'s entrypoint as a user starts it: a child process printing the demo page's URL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.waiting import free_port, wait_for

ROOT = Path(__file__).parents[2]


def usage(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "streamfn"
    return subprocess.run([script, "usage"], env=env, capture_output=True, text=True, check=False)


def test_local_server_prints_its_url_streams_with_echo_and_keeps_usage(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "usage.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFN_")}
    env |= {"PORT": str(port), "STREAMFN_ECHO_DELAY_MS": "1", "STREAMFN_USAGE_DB": str(db)}
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
        match = re.search(r"chat page at (http://\S+/) ", first_line)
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
        request_id = reply.headers["x-request-id"]
        # The usage record, as `streamfn usage` reads it back from the same file (echo has no
        # price: its cost is unknown).
        row = re.compile(r"echo\s+echo\s+1\s+3\s+3\s+0\s+0\s+0\s+unknown$", re.M)
        wait_for(lambda: row.search(usage(env).stdout), "the record in `streamfn usage`")
    finally:
        proc.send_signal(signal.SIGINT)
        _, log = proc.communicate(timeout=10)
    # streamfn's log lines are JSON: one per request end, with its record and no content.
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    [ended] = [line for line in lines if line["message"] == "request ended"]
    assert (ended["request_id"], ended["outcome"], ended["output_tokens"]) == (
        request_id,
        "finished",
        3,
    )
    assert "from the child" not in log
