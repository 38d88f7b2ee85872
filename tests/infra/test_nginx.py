"""infra/nginx/streamfn.conf in front of a real uvicorn server: Debian's nginx, run unprivileged
on loopback with the site file as shipped (only its addresses changed)."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.fakes import wire as w
from tests.fakes.servers import RedisServer
from tests.fakes.upstream import Reply, Upstream
from tests.processes import ServerProcess
from tests.sse_client import stream, text_of, user
from tests.waiting import free_port, wait_for_port

ROOT = Path(__file__).parents[2]
SITE = ROOT / "infra" / "nginx" / "streamfn.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def nginx_in_front(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`start(upstream_url)`: nginx with the shipped site proxying to it (or to each of a list
    of upstreams, a fleet); returns nginx's URL."""
    if not Path(NGINX).exists():
        if os.environ.get("CI"):
            pytest.fail("nginx is missing: `make test` installs Debian's nginx")
        pytest.skip("nginx is not installed (make test installs it when run as root)")
    started: list[subprocess.Popen[bytes]] = []

    def start(upstream: str | list[str], read_timeout: str | None = None) -> str:
        port = free_port()
        site = SITE.read_text()
        if read_timeout is not None:  # a proxy that cuts an idle upstream sooner
            assert "proxy_read_timeout 900s;" in site
            site = site.replace("proxy_read_timeout 900s;", f"proxy_read_timeout {read_timeout};")
        assert "server 127.0.0.1:8000;" in site
        assert "listen 80;" in site
        servers = [upstream] if isinstance(upstream, str) else upstream
        lines = "\n    ".join(f"server {u.removeprefix('http://')};" for u in servers)
        site = site.replace("server 127.0.0.1:8000;", lines)
        site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
        (tmp_path / "site.conf").write_text(site)
        (tmp_path / "nginx.conf").write_text(
            f"""
            daemon off;
            worker_processes 1;
            pid {tmp_path}/nginx.pid;
            error_log {tmp_path}/error.log warn;
            events {{}}
            http {{
                access_log off;
                client_body_temp_path {tmp_path}/body;
                proxy_temp_path {tmp_path}/proxy;
                fastcgi_temp_path {tmp_path}/fastcgi;
                uwsgi_temp_path {tmp_path}/uwsgi;
                scgi_temp_path {tmp_path}/scgi;
                include {tmp_path}/site.conf;
            }}
            """
        )
        config = ["-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        check = subprocess.run([NGINX, "-t", *config], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen([NGINX, *config])
        started.append(proc)

        def running() -> None:
            assert proc.poll() is None, (tmp_path / "error.log").read_text()

        wait_for_port(port, "nginx", running)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


async def test_tokens_pass_through_nginx_as_they_are_generated(
    serve: Callable[[ASGIApp], str], nginx_in_front: Callable[[str], str]
) -> None:
    upstream = serve(create_app(Settings(echo_delay_ms=150)))
    url = nginx_in_front(upstream)
    async with httpx.AsyncClient(timeout=30) as client:
        response, events = await stream(client, f"{url}/chat/stream", user("one two three four"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in response.headers
    assert text_of(events) == "one two three four"
    tokens = [e for e in events if e.event == "token"]
    # Each token came through on its own, about 150 ms after the one before: nothing buffered.
    gaps = [b.at - a.at for a, b in itertools.pairwise(tokens)]
    assert min(gaps) > 0.075, gaps
    assert response.headers["x-request-id"]


async def test_nginx_cuts_slow_headers_and_a_flood(
    serve: Callable[[ASGIApp], str], nginx_in_front: Callable[[str], str]
) -> None:
    import asyncio
    import socket
    import time

    url = nginx_in_front(serve(create_app(Settings(usage_records=False))))
    port = int(url.rsplit(":", 1)[1])
    # Headers that never finish: nginx closes the connection after client_header_timeout.
    with socket.create_connection(("127.0.0.1", port), timeout=20) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        started = time.monotonic()
        assert slow.recv(1024) == b""  # closed, with no response
        assert 9 < time.monotonic() - started < 15
    # A flood from one address: past the burst, 429s, and nothing more reaches the app.
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(*(client.get(f"{url}/healthz") for _ in range(60)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(429) >= 30
    assert 200 in statuses


async def test_early_commit_keeps_a_slow_first_token_alive_through_a_proxy(
    serve: Callable[[ASGIApp], str], nginx_in_front: Callable[..., str]
) -> None:
    """A model that thinks longer than the proxy's read timeout (1 s here, often 60 s): without
    early commit the proxy gives up (504) before the first byte; with it, the status, headers
    and keepalive comments keep the connection, and the answer arrives."""
    thinking = [w.OPENAI_ROLE, 2.5, w.openai_chunk("finally"), *w.openai_stream([])[1:]]
    with Upstream(Reply(body=thinking)) as up:
        base = {
            "openai_api_key": w.SECRET,
            "openai_base_url": f"{up.url}/v1",
            "default_provider": "openai",
            "keepalive_s": 0.4,
            "usage_records": False,
        }
        plain = nginx_in_front(serve(create_app(Settings(**base))), read_timeout="1s")
        early = nginx_in_front(
            serve(create_app(Settings(**base, early_commit_s=0.3))), read_timeout="1s"
        )
        async with httpx.AsyncClient(timeout=30) as client:
            cut = await client.post(f"{plain}/chat/stream", json=user("hi"))
            response, events = await stream(client, f"{early}/chat/stream", user("hi"))
    assert cut.status_code == 504  # nginx's own: it gave up waiting
    assert response.status_code == 200
    assert text_of(events) == "finally"
    assert events[-1].event == "done"


async def test_a_fleet_of_three_behind_nginx_shares_limits_and_resumes(
    nginx_in_front: Callable[..., str], redis: RedisServer, tmp_path: Path
) -> None:
    settings = {
        "STREAMFN_REDIS_URL": redis.url,
        "STREAMFN_ECHO_DELAY_MS": "30",
        "STREAMFN_REQUESTS_PER_MINUTE": "10",
    }
    servers = [
        ServerProcess(
            {
                **settings,
                "STREAMFN_USAGE_DB": str(tmp_path / f"usage-{i}.sqlite3"),
                "STREAMFN_STREAMS_DB": str(tmp_path / f"streams-{i}.sqlite3"),
            }
        )
        for i in range(3)
    ]
    try:
        url = nginx_in_front([s.url for s in servers])
        redis.clear_of_minute_end()
        async with httpx.AsyncClient(timeout=30) as client:
            statuses = [
                (await client.post(f"{url}/chat/stream", json=user("hi"))).status_code
                for _ in range(9)
            ]
            assert statuses == [200] * 9
            # The tenth: a long one, dropped, and resumed through nginx on whichever server.
            words = " ".join(f"w{i}" for i in range(40))
            async with client.stream("POST", f"{url}/chat/stream", json=user(words)) as response:
                assert response.status_code == 200
                id = response.headers["x-stream-id"]
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        last = line.removeprefix("id: ")
                        break
            await asyncio.sleep(0.3)  # its head reaches Redis with the journal's first batch
            resumed, rest = await stream(
                client, f"{url}/chat/stream/{id}", headers={"Last-Event-ID": last}
            )
            assert resumed.status_code == 200
            assert [e.event for e in rest[-2:]] == ["usage", "done"]
            refused = await client.post(f"{url}/chat/stream", json=user("hi"))
            assert refused.status_code == 429  # the fleet's eleventh of the minute
            assert "made 10 requests this minute" in refused.json()["error"]["message"]
        # nginx spread them: every server served some.
        for i in range(3):
            with sqlite3.connect(tmp_path / f"usage-{i}.sqlite3") as db:
                assert db.execute("SELECT count(*) FROM usage").fetchone()[0] >= 1
    finally:
        for server in servers:
            server.stop()
