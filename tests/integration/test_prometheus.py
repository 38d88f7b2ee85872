"""STREAMFN_METRICS=prometheus: scrapes of GET /metrics through a real server, parsed with
prometheus_client's own parser; who may read them; and several uvicorn workers counting as one
(prometheus_client's multiprocess mode)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import StreamError
from streamfn.observability.prometheus import OTHER, _from_this_machine, _Models
from streamfn.providers import ProviderSpec
from streamfn.providers.echo import EchoProvider
from streamfn.settings import Settings
from tests.keys import create_key
from tests.processes import ROOT
from tests.providers import Scripted, spec
from tests.sse_client import stream, user
from tests.waiting import free_port, wait_for

Serve = Callable[[ASGIApp], str]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def app_for(providers: list[ProviderSpec] | None = None, **settings: Any) -> FastAPI:
    values: dict[str, Any] = {
        "metrics": "prometheus",
        "usage_records": False,
        "echo_delay_ms": 0,
        **settings,
    }
    return create_app(Settings(**values), providers=providers)


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def at(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient, url: str, **headers: str) -> Samples:
    response = await client.get(f"{url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def scrape_until(
    client: httpx.AsyncClient, url: str, ready: Callable[[Samples], bool], **headers: str
) -> Samples:
    """A scrape once `ready` holds of it (a request's account settles just after its end)."""
    deadline = time.monotonic() + 10
    while True:
        found = await scrape(client, url, **headers)
        if ready(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_a_scrape_counts_requests_tokens_ttft_and_errors_by_provider_and_model(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    refused = Scripted(StreamError("rate_limit", "slow down", retryable=False))
    providers = [spec(EchoProvider(0)), spec(refused, name="flaky", default_model="m1")]
    url = serve(app_for(providers))
    output = 0
    for text in ("one two three", "four five"):
        _, events = await stream(client, f"{url}/chat/stream", user(text))
        output += json.loads(next(e.data for e in events if e.event == "usage"))["output_tokens"]
    failed = await client.post(f"{url}/chat/stream", json=user("hi", provider="flaky"))
    assert failed.status_code == 429

    echo = {"provider": "echo", "model": "echo"}
    flaky = {"provider": "flaky", "model": "m1"}
    found = await scrape_until(
        client,
        url,
        lambda f: (
            at(f, "streamfn_requests_total", **echo, outcome="finished") == 2
            and at(f, "streamfn_requests_total", **flaky, outcome="errored") == 1
        ),
    )
    assert at(found, "streamfn_requests_total", **echo, outcome="finished") == 2
    assert at(found, "streamfn_requests_total", **flaky, outcome="errored") == 1
    assert at(found, "streamfn_errors_total", **flaky, error_type="rate_limit") == 1
    assert at(found, "streamfn_errors_total", **echo, error_type="rate_limit") is None
    assert at(found, "streamfn_tokens_total", **echo, type="output") == output
    assert (at(found, "streamfn_tokens_total", **echo, type="input") or 0) > 0
    assert at(found, "streamfn_time_to_first_token_seconds_count", **echo) == 2
    assert at(found, "streamfn_time_to_first_token_seconds_count", **flaky) is None  # none came
    assert at(found, "streamfn_request_duration_seconds_count", **flaky) == 1
    assert at(found, "streamfn_open_streams", **echo) == 0
    assert at(found, "streamfn_cost_usd_total", **echo) is None  # echo has no price
    assert at(found, "process_cpu_seconds_total") is not None


async def test_an_open_stream_is_counted_until_it_ends(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(app_for([spec(EchoProvider(0.3))]))
    echo = {"provider": "echo", "model": "echo"}
    async with client.stream("POST", f"{url}/chat/stream", json=user("slow words here")) as r:
        lines = r.aiter_lines()
        async for line in lines:
            if line.startswith("event: token"):
                break
        found = await scrape(client, url)
        assert at(found, "streamfn_open_streams", **echo) == 1
        async for _ in lines:
            pass
    found = await scrape_until(client, url, lambda f: at(f, "streamfn_open_streams", **echo) == 0)
    assert at(found, "streamfn_open_streams", **echo) == 0


async def test_with_auth_on_a_scrape_needs_a_credential(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "keys.sqlite3"
    key, _ = create_key(db)
    url = serve(app_for(auth="api_key", keys_db=db))
    refused = await client.get(f"{url}/metrics")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert (
        await client.get(f"{url}/metrics", headers={"x-api-key": "sfn_nope"})
    ).status_code == 401
    found = await scrape(client, url, authorization=f"Bearer {key}")
    assert at(found, "streamfn_open_streams") is None  # no stream yet, no series


async def test_with_auth_off_only_this_machine_reads_it_and_not_through_a_proxy(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(app_for())
    assert (await client.get(f"{url}/metrics")).status_code == 200
    proxied = await client.get(f"{url}/metrics", headers={"x-forwarded-for": "203.0.113.9"})
    assert proxied.status_code == 403
    assert "this machine" in proxied.json()["error"]["message"]
    # A caller from elsewhere, which a loopback test server cannot have: its scope.
    for host, allowed in (("10.1.2.3", False), ("127.0.0.1", True), ("::1", True)):
        scope = {"type": "http", "client": (host, 5000), "headers": [], "path": "/metrics"}
        assert _from_this_machine(Request(scope)) is allowed


async def test_without_prometheus_there_is_no_metrics_route(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    url = serve(create_app(Settings(usage_records=False)))
    assert (await client.get(f"{url}/metrics")).status_code == 404


def test_a_providers_model_names_are_bounded() -> None:
    model = _Models(2)
    assert [model("p", m) for m in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER, "a", OTHER]
    assert model("q", "c") == "c"  # each provider has its own


def start_workers(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """local/serve.py with `env`, in a session of its own (its workers with it), once it
    listens; slower to start than one process (each worker imports the app)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMFN_", "OTEL_"))}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "local" / "serve.py")],
        env={**base, **env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def listening() -> bool:
        assert server.poll() is None, f"the server exited with {server.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_for(listening, "the workers to listen", timeout_s=60)
    except BaseException:
        stop(server)
        raise
    return server, f"http://127.0.0.1:{port}"


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(5)


def multiprocess_env(directory: Path, workers: int) -> dict[str, str]:
    return {
        "WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "STREAMFN_METRICS": "prometheus",
        "STREAMFN_USAGE_RECORDS": "false",
        "STREAMFN_ECHO_DELAY_MS": "0",
    }


async def send(url: str, requests: int) -> None:
    for _ in range(requests):
        # A connection each: with workers, the kernel hands each to one of them.
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(f"{url}/chat/stream", json=user("a b c"))
            assert response.status_code == 200


async def total(url: str, expected: int) -> float | None:
    echo = {"provider": "echo", "model": "echo", "outcome": "finished"}
    async with httpx.AsyncClient(timeout=30) as client:
        found = await scrape_until(
            client, url, lambda f: at(f, "streamfn_requests_total", **echo) == expected
        )
    assert at(found, "streamfn_open_streams", provider="echo", model="echo") == 0
    return at(found, "streamfn_requests_total", **echo)


@pytest.mark.timeout(180)
def shared_directories() -> set[Path]:
    """The directories local/serve.py made for its workers' counts."""
    return set(Path(tempfile.gettempdir()).glob("streamfn-prometheus-*"))


async def test_workers_share_a_directory_of_their_own_when_none_is_named() -> None:
    env = multiprocess_env(Path("unused"), 2)
    del env["PROMETHEUS_MULTIPROC_DIR"]
    before = shared_directories()
    server, url = start_workers(env)
    try:
        await send(url, 6)
        for _ in range(4):  # whichever worker answers, it shows them all
            assert await total(url, 6) == 6
        [made] = shared_directories() - before
        assert list(made.glob("counter_*.db"))
    finally:
        stop(server)
    assert not made.exists()  # removed when the server stops


@pytest.mark.timeout(180)
async def test_processes_sharing_the_multiprocess_directory_count_as_one(tmp_path: Path) -> None:
    """What several workers rely on, with two processes whose traffic is known: each scrape,
    of either, shows both's."""
    directory = tmp_path / "prometheus"
    first, first_url = start_workers(multiprocess_env(directory, 1))
    try:
        second, second_url = start_workers(multiprocess_env(directory, 1))
        try:
            await send(first_url, 3)
            await send(second_url, 5)
            assert await total(first_url, 8) == 8
            assert await total(second_url, 8) == 8
            assert len(list(directory.glob("counter_*.db"))) == 2
        finally:
            stop(second)
        # A process gone: what it counted stays counted; its open streams leave the sum.
        assert await total(first_url, 8) == 8
    finally:
        stop(first)


@pytest.mark.timeout(180)
async def test_workers_count_in_the_multiprocess_directory(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    server, url = start_workers(multiprocess_env(directory, 2))
    try:
        await send(url, 10)
        for _ in range(4):  # whichever worker answers, it shows them all
            assert await total(url, 10) == 10
        assert list(directory.glob("counter_*.db"))
    finally:
        stop(server)
