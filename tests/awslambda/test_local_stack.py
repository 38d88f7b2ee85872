"""`make run-lambda` is the deployed stack, locally (issue #23), run as a user runs it: the
template's tables on a local DynamoDB (moto), the template's variables, auth on and the key it
prints. `make smoke` passes every check against it; the chat page's Stop stops a generation
through it; the printed command makes a key whose limits hold; usage records land in the usage
table; its URL answers browsers with streamfn's one CORS contract, as the app does; and Ctrl+C
takes the tables down with it."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from httpx_sse import EventSource

from local.stack import Resolver, function_environment, parse_parameters, table_name
from local.url_cors import load_template
from streamfn.app import create_app
from streamfn.origins import CORS
from streamfn.settings import Settings
from tests.conftest import ServerThread

ROOT = Path(__file__).parents[2]
# `make` as a user runs it; -o: the dev packages are taken as installed (make test has just
# installed them), so that a pyproject.toml edited since never starts an install here.
MAKE = ["make", "-s", "--no-print-directory", "-o", ".venv/.dev-installed"]
ORIGIN = "http://localhost:8000"  # the template's default CorsAllowedOrigins
# About 15 s for the module on an idle 2-core machine; the stack's start (moto, a runtime's cold
# start, the key) is counted in the first test's time, and takes far longer on a busy one.
pytestmark = pytest.mark.timeout(120)
WORDS = " ".join(f"w{i}" for i in range(300))


@dataclass
class RunLambda:
    """`make run-lambda` in a process group of its own, and what it printed."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("  ") and "/streamfn usage" in line:  # the banner's last line
                self.ready.set()
        self.ready.set()

    def printed(self, pattern: str) -> str:
        for line in self.lines:
            if found := re.search(pattern, line):
                return found.group(1)
        raise AssertionError(f"make run-lambda printed no {pattern!r}:\n" + "\n".join(self.lines))

    @property
    def url(self) -> str:
        return self.printed(r"function URL emulator at (http://\S+?)/? ")

    @property
    def key(self) -> str:
        return self.printed(r"^  KEY=(sfn_\S+)$")

    @property
    def exports(self) -> dict[str, str]:
        """The variables it prints for `streamfn` in another shell."""
        words = shlex.split(self.printed(r"^  export (.+)$"))
        return dict(word.split("=", 1) for word in words)

    def interrupt(self) -> int:
        """Ctrl+C, as a terminal sends it: SIGINT to the whole process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                return self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise
        return self.process.returncode


def _env() -> dict[str, str]:
    """The user's environment without their streamfn and AWS settings, nor an outer make's."""
    drop = ("STREAMFN_", "AWS_", "MAKE", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    # The offline provider, whatever provider keys the shell has.
    env["STREAMFN_DEFAULT_PROVIDER"] = "echo"
    return env


@pytest.fixture(scope="module")
def stack() -> Iterator[RunLambda]:
    if not (ROOT / ".venv" / "bin" / "python").exists():
        if os.environ.get("CI"):
            pytest.fail(".venv is missing: `make test` makes it")
        pytest.skip(".venv is missing (make test makes it)")
    process = subprocess.Popen(
        [*MAKE, "run-lambda", "PORT=0"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, for the Ctrl+C
    )
    running = RunLambda(process)
    running.reader = threading.Thread(target=running.read, daemon=True)
    running.reader.start()
    try:
        assert running.ready.wait(90), "\n".join(running.lines)
        assert process.poll() is None, "\n".join(running.lines)
        yield running
    finally:
        running.interrupt()
        if running.reader is not None:
            running.reader.join(5)
        assert process.stdout is not None
        process.stdout.close()


def test_it_prints_a_key_for_its_keys_table_and_auth_is_on(stack: RunLambda) -> None:
    assert stack.exports["STREAMFN_KEYS_TABLE"] == "streamfn-keys"
    assert stack.exports["AWS_ENDPOINT_URL_DYNAMODB"].startswith("http://127.0.0.1:")
    ask = {"messages": [{"role": "user", "content": " ".join(WORDS.split()[:20])}]}
    key = {"authorization": f"Bearer {stack.key}"}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{stack.url}/chat/stream", json=ask, headers=key) as answered,
    ):
        assert answered.status_code == 200
        events = EventSource(answered).iter_sse()
        assert next(events).event == "token"
        # While that one streams, so that a second environment is warm for the tests below (a
        # stop, or a resume, is another invocation; a cold one takes seconds on a busy machine).
        refused = client.post(f"{stack.url}/chat/stream", json=ask)
        assert refused.status_code == 401  # the README's curl without a key: auth on, as in AWS
        assert [e.event for e in events][-1] == "done"


def _stop(client: httpx.Client, url: str, headers: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + 5  # the stream's head is in the log a tenth of a second in
    while (stop := client.post(url, headers=headers)).status_code == 404:
        assert time.monotonic() < deadline, stop.text
        time.sleep(0.05)
    return stop


def test_the_chat_pages_stop_ends_the_generation_through_the_url(stack: RunLambda) -> None:
    """streamfn.js's abort(): POST /chat/stream/{id}/stop while the stream is read; the
    producing invocation sees the stop in the stream log and ends the stream there."""
    headers = {"authorization": f"Bearer {stack.key}"}
    body = {"messages": [{"role": "user", "content": WORDS}]}
    events: list[Any] = []
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", f"{stack.url}/chat/stream", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        id, request = response.headers["x-stream-id"], response.headers["x-request-id"]
        for event in EventSource(response).iter_sse():
            events.append(event)
            if len(events) == 3:
                stop = _stop(client, f"{stack.url}/chat/stream/{id}/stop", headers)
                assert stop.status_code == 202, stop.text
                assert stop.json() == {"id": id, "stopping": True}
    tokens = sum(e.event == "token" for e in events)
    assert events[-1].event == "error", [e.event for e in events[-3:]]
    assert json.loads(events[-1].data)["type"] == "stopped"
    assert tokens < len(WORDS.split()) / 2, tokens  # well before its last token
    # Its usage record, in the usage table as deployed: cancelled, the tokens it got to.
    table = boto3.resource(
        "dynamodb",
        endpoint_url=stack.exports["AWS_ENDPOINT_URL_DYNAMODB"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    ).Table(stack.exports["STREAMFN_USAGE_TABLE"])
    deadline = time.monotonic() + 10
    while (item := table.get_item(Key={"request_id": request}).get("Item")) is None:
        assert time.monotonic() < deadline, "no usage record"
        time.sleep(0.1)
    assert item["outcome"] == "cancelled"
    assert 0 < int(str(item["output_tokens"])) < len(WORDS.split()) / 2


def test_the_printed_command_makes_a_key_whose_limits_hold(stack: RunLambda) -> None:
    """Limits counted in the limits table, per key, as deployed."""
    printed = stack.printed(r"^  (\S+/streamfn keys create) --name NAME$")
    made = subprocess.run(
        [*shlex.split(printed), "--name", "few", "--rpm", "2"],
        cwd=ROOT,
        env={**_env(), **stack.exports},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = made.stdout.strip()
    headers = {"x-api-key": key}  # the Anthropic SDKs' header: a key either way
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    statuses = [
        httpx.post(f"{stack.url}/chat/stream", json=ask, headers=headers, timeout=30)
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429], statuses[-1].text
    assert statuses[-1].headers["retry-after"]


def test_the_printed_make_smoke_passes_every_check(stack: RunLambda) -> None:
    """Run after the tests above, on the environments they warmed (a cold one takes seconds)."""
    command = shlex.split(stack.printed(r"^  (make smoke .+)$").replace("$KEY", stack.key))
    assert command[-1] == f"ORIGIN={ORIGIN}"  # an origin the URL allows: every check runs
    result = subprocess.run(
        [*MAKE, *command[1:]],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [
        line for line in result.stdout.splitlines() if line[:6] in ("pass  ", "FAIL  ", "skip  ")
    ]
    assert len(rows) == 8, result.stdout
    assert all(row.startswith("pass") for row in rows), result.stdout  # nothing skipped
    for check in ("ids continuous, ended with done", "ended with a stopped error", "401"):
        assert check in result.stdout, result.stdout


def _names(header: str) -> set[str]:
    return {name.strip().lower() for name in header.split(",")}


def _preflight(client: Any, url: str) -> Any:
    return client.options(
        f"{url}/v1/responses/resp_1",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "DELETE",
            "access-control-request-headers": ",".join(CORS.allow_headers),
        },
    )


def _assert_the_contract(preflight: Any, response: Any) -> None:
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    methods = _names(preflight.headers["access-control-allow-methods"])
    assert {m.lower() for m in CORS.allow_methods} <= methods  # DELETE among them
    assert set(CORS.allow_headers) <= _names(preflight.headers["access-control-allow-headers"])
    assert preflight.headers["access-control-max-age"] == str(CORS.max_age_s)
    assert response.headers.get_list("access-control-allow-origin") == [ORIGIN]
    assert _names(response.headers["access-control-expose-headers"]) == set(CORS.expose_headers)


def test_the_function_url_answers_browsers_with_the_one_cors_contract(stack: RunLambda) -> None:
    with httpx.Client(timeout=30) as client:
        preflight = _preflight(client, stack.url)
        response = client.get(
            f"{stack.url}/chat/stream",
            params={"prompt": "hi"},
            headers={"origin": ORIGIN, "authorization": f"Bearer {stack.key}"},
        )
        elsewhere = client.get(
            f"{stack.url}/chat/stream", params={"prompt": "hi"}, headers={"origin": "http://x.test"}
        )
    _assert_the_contract(preflight, response)
    assert "access-control-allow-origin" not in elsewhere.headers


def test_the_app_answers_browsers_with_the_same_contract() -> None:
    """The app's own CORS (uvicorn, self-hosted), which in AWS the URL's replaces."""
    settings = Settings(cors_origins=[ORIGIN], usage_records=False, auth="none")
    with ServerThread(create_app(settings)) as server, httpx.Client(timeout=30) as client:
        preflight = _preflight(client, server.url)
        response = client.get(
            f"{server.url}/chat/stream", params={"prompt": "hi"}, headers={"origin": ORIGIN}
        )
    _assert_the_contract(preflight, response)


def test_the_function_gets_the_templates_variables_naming_the_local_tables() -> None:
    template = load_template()
    names = {
        resource: table_name(resource)
        for resource, spec in template["Resources"].items()
        if spec["Type"] == "AWS::DynamoDB::Table"
    }
    env = function_environment(template, {}, names)
    assert {env[f"STREAMFN_{t}_TABLE"] for t in ("KEYS", "LIMITS", "STREAMS", "USAGE")} == {
        "streamfn-keys",
        "streamfn-limits",
        "streamfn-streams",
        "streamfn-usage",
    }
    assert env["STREAMFN_AUTH"] == "api_key"  # the template's default: auth on
    assert env["STREAMFN_CORS_ORIGINS"] == ORIGIN
    assert "AWS_LAMBDA_EXEC_WRAPPER" not in env  # the emulator runs functions/bootstrap itself
    assert "STREAMFN_REQUESTS_PER_MINUTE" not in env  # !If [..., !Ref AWS::NoValue]
    given = parse_parameters("RequestsPerMinute=5 'CorsAllowedOrigins=https://a,https://b'")
    env = function_environment(template, given, names)
    assert env["STREAMFN_REQUESTS_PER_MINUTE"] == "5"
    assert env["STREAMFN_CORS_ORIGINS"] == "https://a,https://b"
    resolver = Resolver(template, {"StreamfnAuth": "none"}, names)
    assert resolver.value({"Ref": "StreamfnAuth"}) == "none"


def test_ctrl_c_stops_the_stack_with_the_target(stack: RunLambda) -> None:
    endpoint = stack.exports["AWS_ENDPOINT_URL_DYNAMODB"]
    ports = [int(u.rsplit(":", 1)[1]) for u in (stack.url, endpoint)]
    stack.interrupt()
    for port in ports:  # neither the URL nor the tables are there any more
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, port
