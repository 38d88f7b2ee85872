"""Clients that never read: what N of them cost a server, in memory and in its stream log.

Each opens `POST /chat/stream` for a large answer from the fake upstream (`big-T-S`: T tokens
of S characters, as fast as it goes) and then reads nothing. The server (local/serve.py, as
`make run` starts it, with the SQLite log) must hold a bounded amount per stream whatever they
do: its resident memory is sampled throughout, then again once the streams have ended and the
clients have gone, with the log's size and whether each client's connection was reset.

Run: python bench/nonreaders.py [N] (100 by default); `make bench` reports it too (its
`nonreaders` row, `BENCH_ONLY=nonreaders` alone: about half a minute).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
STREAMS = 100  # the (#22) figure: what 100 non-readers cost


@dataclass(frozen=True)
class Cost:
    streams: int
    answer_bytes: int  # what each would have been, had it been read (and not capped)
    baseline_mb: float  # the server's resident memory before
    peak_mb: float  # ... at its highest while they were open
    after_mb: float  # ... once they had ended and gone
    log_mb: float  # the SQLite log file and its WAL, after
    ended: int  # streams whose end is in the log
    too_large: int  # of those, ended by STREAMFN_MAX_STREAM_BYTES
    reset: int  # clients whose connection the server reset (a RST, not a graceful close)
    seconds: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    ends = time.monotonic() + timeout_s
    while time.monotonic() < ends:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def _request(port: int, model: str) -> bytes:
    body = json.dumps(
        {"messages": [{"role": "user", "content": "x"}], "provider": "openai", "model": model}
    ).encode()
    head = (
        f"POST /chat/stream HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _ended(db: Path) -> tuple[int, int]:
    """Streams whose end is in the log, and how many of those ended too large."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT p.events FROM pages p JOIN streams s ON s.id = p.stream WHERE p.end"
        ).fetchall()
    return len(rows), sum("too_large" in events for (events,) in rows)


def measure(
    streams: int,
    *,
    tokens: int = 4000,
    token_chars: int = 4096,
    data: Path | None = None,
    settings: dict[str, str] | None = None,
    timeout_s: float = 300,
) -> Cost:
    """Open `streams` non-reading clients of a `tokens` x `token_chars` answer each."""
    data = data or Path(tempfile.mkdtemp(prefix="streamfn-nonreaders-"))
    up_port, port = _free_port(), _free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "upstream.py"), str(up_port)],
        stdout=subprocess.DEVNULL,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMFN_", "OPENAI_"))}
    env |= {
        "PORT": str(port),
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
        "STREAMFN_STREAMS_DB": str(data / "streams.sqlite3"),
        "STREAMFN_USAGE_DB": str(data / "usage.sqlite3"),
        "STREAMFN_WRITE_TIMEOUT_S": "2",
        "STREAMFN_RESUME_GRACE_S": "1",
        "STREAMFN_KEEPALIVE_S": "0",
        **(settings or {}),
    }
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "local" / "serve.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clients: list[socket.socket] = []
    try:
        _wait_port(up_port, upstream)
        _wait_port(port, server)
        # One stream read whole first: imports, pools and the log's file made before the baseline.
        with socket.create_connection(("127.0.0.1", port)) as warm:
            warm.sendall(_request(port, "fast-10"))
            warm.settimeout(10)
            while b"event: done" not in warm.recv(65536):
                pass
        time.sleep(0.5)
        baseline = peak = _rss_mb(server.pid)
        started = time.monotonic()
        for _ in range(streams):
            client = socket.socket()
            # A small receive window: what the kernel takes on the reader's behalf stays small.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", port))
            client.sendall(_request(port, f"big-{tokens}-{token_chars}"))
            clients.append(client)
        db = data / "streams.sqlite3"
        ended = too_large = 0
        while time.monotonic() - started < timeout_s:
            peak = max(peak, _rss_mb(server.pid))
            ended, too_large = _ended(db)
            if ended >= streams + 1:  # the warm-up's too
                break
            time.sleep(0.2)
        reset = 0
        for client in clients:
            client.settimeout(5)
            try:
                while client.recv(1 << 20):
                    pass
            except ConnectionResetError:
                reset += 1
            except TimeoutError:
                pass
            client.close()
        clients.clear()
        time.sleep(6)  # a sweep of the journal's (every 5 s) hands freed memory back
        after = _rss_mb(server.pid)
        log = sum(p.stat().st_size for p in data.glob("streams.sqlite3*"))
        return Cost(
            streams=streams,
            answer_bytes=tokens * token_chars,
            baseline_mb=round(baseline, 1),
            peak_mb=round(peak, 1),
            after_mb=round(after, 1),
            log_mb=round(log / (1 << 20), 1),
            ended=ended - 1,
            too_large=too_large,
            reset=reset,
            seconds=round(time.monotonic() - started, 1),
        )
    finally:
        for client in clients:
            client.close()
        for process in (server, upstream):
            process.terminate()
            process.wait(10)


def section(rows: dict[str, Any]) -> list[str]:
    """BENCHMARKS.md's account of the `nonreaders` row."""
    c = Cost(**rows["nonreaders"]["cost"])
    answer_mb = c.answer_bytes / (1 << 20)
    return [
        "",
        "## Clients that never read",
        "",
        f"{c.streams} clients each open `POST /chat/stream` for a {answer_mb:.0f} MB answer (the",
        "fake upstream as fast as it goes) and read nothing; the server is `make run`'s, its",
        "SQLite stream log on, write timeout 2 s, resume grace 1 s (bench/nonreaders.py).",
        "",
        "| server RSS before | at its highest | after they ended | per stream, at the highest "
        "| stream log after | ended in the log | connections reset |",
        "|---|---|---|---|---|---|---|",
        f"| {c.baseline_mb:.0f} MB | {c.peak_mb:.0f} MB | {c.after_mb:.0f} MB | "
        f"{(c.peak_mb - c.baseline_mb) / c.streams:.1f} MB | {c.log_mb:.0f} MB | "
        f"{c.ended} of {c.streams} ({c.too_large} too large) | {c.reset} |",
    ]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else STREAMS
    sys.stdout.write(json.dumps(asdict(measure(count)), indent=2) + "\n")
