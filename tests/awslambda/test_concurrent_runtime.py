"""The runtime's concurrent mode (Lambda Managed Instances, issue #23) against the function URL
emulator run as Managed Instances run: one runtime process with AWS_LAMBDA_MAX_CONCURRENCY=N,
taking up to N invocations at once on concurrent `next`s, each with its own deadline.

N streams progress together in the one process, each invocation with its own request id, log
keys, trace (no `_X_AMZN_TRACE_ID`) and X-Ray subsegment; each slot writes its usage record
before asking for more; a deadline ends one stream, not the others; the attempt's
Lambda-Runtime-Invocation-Id comes back on its response and error; SIGTERM drops the waiting
`next`s and lets what runs finish.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.lambda_emulator import EmulatorThread
from streamfn.awslambda import invocation_context
from tests.awslambda.test_streaming_runtime import chat
from tests.waiting import wait_for

ROOT = Path(__file__).parents[2]
HERE = "tests.awslambda.test_concurrent_runtime"
Start = Callable[..., EmulatorThread]


# --- apps the runtime carries in these tests (imported by the child from this module) ---------


async def seen(request: Request) -> Response:
    """What the invocation sees of itself, before and after other invocations have run."""
    context = request.scope.get("aws.context")
    first = invocation_context.trace_header()
    await asyncio.sleep(float(request.query_params.get("wait", "0.3")))
    # A task started by the request sees its invocation too (it copies the context).
    in_task = await asyncio.create_task(_header_in_a_task())
    return JSONResponse(
        {
            "request_id": getattr(context, "aws_request_id", None),
            "xray_trace_id": getattr(context, "xray_trace_id", None),
            "header": first,
            "header_later": invocation_context.trace_header(),
            "header_in_task": in_task,
            "env": os.environ.get("_X_AMZN_TRACE_ID"),
        }
    )


async def _header_in_a_task() -> str | None:
    return invocation_context.trace_header()


async def overstays(_request: Request) -> Response:
    """Ignores its deadline, as Managed Instances let code do."""
    await asyncio.sleep(60)
    return Response("too late")


_routes = Starlette(routes=[Route("/seen", seen), Route("/overstays", overstays)])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The routes above; `/fail` fails before any response (no error middleware)."""
    if scope["type"] == "http" and scope["path"] == "/fail":
        raise RuntimeError("failed before the prelude")
    await _routes(scope, receive, send)


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def managed() -> Iterator[Start]:
    """`managed(max_concurrency, timeout_s=..., **env)`: the emulator as Managed Instances."""
    started: list[EmulatorThread] = []

    def start(
        max_concurrency: int, timeout_s: float = 60, concurrency: int = 1, **env: str
    ) -> EmulatorThread:
        # As tests/awslambda/conftest.py: this checkout's modules, the settings' defaults.
        base: dict[str, str | None] = {k: None for k in os.environ if k.startswith("STREAMFN_")}
        full_env: dict[str, Any] = {
            **base,
            "PYTHONPATH": str(ROOT),
            "STREAMFN_AUTH": "none",
            **env,
        }
        thread = EmulatorThread(
            env=full_env,
            timeout_s=timeout_s,
            concurrency=concurrency,
            max_concurrency=max_concurrency,
        ).__enter__()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.__exit__()
        assert thread.record.violations == [], thread.record.violations


def stream(
    url: str, text: str, out: dict[str, Any], ready: threading.Barrier | None = None
) -> None:
    """POST /chat/stream: status, request id, each event's (name, data, arrival). With `ready`,
    the request goes once every other thread's client is made, so that they start together."""
    events: list[tuple[str, str, float]] = []
    with httpx.Client(timeout=30) as client:
        if ready is not None:
            ready.wait(30)
        with client.stream("POST", f"{url}/chat/stream", json=chat(text)) as response:
            out["status"] = response.status_code
            out["request_id"] = response.headers.get("x-request-id")
            name = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((name, line.removeprefix("data: "), time.monotonic()))
    out["events"] = events


def at_once(target: Callable[..., None], *args_each: tuple[Any, ...]) -> list[dict[str, Any]]:
    """`target(*args, result)` in a thread per `args`, together; their results."""
    results: list[dict[str, Any]] = [{} for _ in args_each]
    threads = [
        threading.Thread(target=target, args=(*args, result))
        for args, result in zip(args_each, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def streams(url: str, *texts: str) -> list[dict[str, Any]]:
    """One stream per text, started together."""
    ready = threading.Barrier(len(texts))
    return at_once(lambda text, out: stream(url, text, out, ready), *[(t,) for t in texts])


def tokens(result: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [e for e in result["events"] if e[0] == "token"]


def root(header: str) -> str:
    return dict(part.split("=", 1) for part in header.split(";"))["Root"]


def ready(fn: EmulatorThread, slots: int) -> None:
    """Until the runtime has made `slots` concurrent `next`s: init over, every slot waiting. A
    cold start may take its time on a loaded machine."""
    fn.wait_for("asked", count=slots, timeout_s=60)


def log_lines(fn: EmulatorThread) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in fn.record.logs if line.startswith("{")]
    return [line for line in lines if "level" in line]  # EMF documents are JSON lines too


# --- tests -------------------------------------------------------------------------------------


def test_n_streams_progress_together_in_one_runtime_process(managed: Start) -> None:
    fn = managed(4, STREAMFN_ECHO_DELAY_MS="100")
    # Four `next`s at once, before any invocation exists: one per slot.
    ready(fn, 4)
    assert not any(call == "next" for _, call, _ in fn.record.calls)

    words = " ".join(f"w{i}" for i in range(10))
    results = streams(fn.url, *[words] * 4)
    assert [r["status"] for r in results] == [200] * 4
    assert fn.record.runtime_starts == 1  # one process took all four
    assert all("".join(t[1] for t in tokens(r)) == words for r in results)
    assert all(r["events"][-1][0] == "done" for r in results)
    # Streamed, each of them, and together: every stream had its first token before any had
    # its last, and none came in one piece.
    assert max(tokens(r)[0][2] for r in results) < min(tokens(r)[-1][2] for r in results)
    assert all(tokens(r)[-1][2] - tokens(r)[0][2] > 0.5 for r in results)
    assert len({r["request_id"] for r in results}) == 4


def test_a_request_finding_every_slot_busy_is_throttled(managed: Start) -> None:
    fn = managed(2, STREAMFN_ECHO_DELAY_MS="200")
    ready(fn, 2)
    results: list[dict[str, Any]] = [{}, {}]
    words = " ".join(f"w{i}" for i in range(15))  # 3 s: busy while the third one comes
    threads = [threading.Thread(target=stream, args=(fn.url, words, r)) for r in results]
    with httpx.Client(timeout=30) as client:
        for thread in threads:
            thread.start()
        fn.wait_for("next", count=2)
        throttled = client.post(f"{fn.url}/chat/stream", json=chat("a third"))
    assert throttled.status_code == 429
    assert throttled.headers["x-amzn-errortype"] == "TooManyRequestsException"
    for thread in threads:
        thread.join(60)
    assert [r["status"] for r in results] == [200, 200]
    assert sum(call == "next" for _, call, _ in fn.record.calls) == 2  # never invoked
    assert fn.record.runtime_starts == 1  # throttled, not a process per request


def test_each_slot_writes_its_usage_record_before_it_asks_for_more(
    managed: Start, tmp_path: Path
) -> None:
    usage_file = tmp_path / "usage.jsonl"
    fn = managed(
        3, STREAMFN_LAMBDA_APP="tests.awslambda.apps:usage_to_file", TEST_USAGE_FILE=str(usage_file)
    )
    ready(fn, 3)
    results = streams(fn.url, *[f"request number {i}" for i in range(3)])
    ids = {r["request_id"] for r in results}
    assert len(ids) == 3

    def settled() -> dict[str, float]:
        lines = usage_file.read_text().splitlines() if usage_file.exists() else []
        records = [w for w in map(json.loads, lines) if w["status"] != 0]  # not the opened ones
        return {w["request_id"]: w["at"] for w in records} if len(records) == 3 else {}

    written = wait_for(settled, "three settled usage records")
    assert set(written) == ids  # each invocation's record under its own request id
    wait_for(lambda: sum(c == "asked" for _, c, _ in fn.record.calls) >= 6, "a new ask per slot")
    # Three slots asked at the start; any ask after that is a slot that finished one: by then
    # its record (the store takes 0.3 s) was written. So at every ask, asks <= 3 + records.
    asks = sorted(t for t, call, _ in fn.record.calls if call == "asked")
    for n, at in enumerate(asks, start=1):
        assert n <= 3 + sum(w < at for w in written.values()), (n, at, written)

    # Every line logged during an invocation carries that invocation's request id and trace.
    lines = wait_for(
        lambda: [e for e in log_lines(fn) if e["message"] == "request ended"][2:] and log_lines(fn),
        "three request-end log lines",
    )
    for line in lines:
        if "request_id" in line:
            trace = fn.record.trace_ids[line["request_id"]]
            assert line["xray_trace_id"] == root(trace), line
    ended = {e["request_id"] for e in lines if e["message"] == "request ended"}
    assert ended == ids


def test_no_shared_trace_id_each_invocation_sees_its_own(managed: Start) -> None:
    fn = managed(3, STREAMFN_LAMBDA_APP=f"{HERE}:app")
    ready(fn, 3)

    def get(url: str, out: dict[str, Any]) -> None:
        out.update(httpx.get(f"{url}/seen", timeout=30).json())

    results = at_once(get, *[(fn.url,)] * 3)
    assert len({r["request_id"] for r in results}) == 3
    for seen_ in results:
        header = fn.record.trace_ids[seen_["request_id"]]
        # Its own header, from the context (not the process), before and after the others
        # ran, and in a task it started; and no process-wide variable at all.
        assert seen_["xray_trace_id"] == header
        assert seen_["header"] == seen_["header_later"] == seen_["header_in_task"] == header
        assert seen_["env"] is None
    assert len({r["header"] for r in results}) == 3


@pytest.fixture
def xray_daemon() -> Iterator[socket.socket]:
    """A UDP socket on loopback standing in for the X-Ray daemon."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


def test_each_invocations_subsegment_is_in_its_own_trace(
    managed: Start, xray_daemon: socket.socket
) -> None:
    daemon = f"127.0.0.1:{xray_daemon.getsockname()[1]}"
    fn = managed(3, STREAMFN_ECHO_DELAY_MS="50", AWS_XRAY_DAEMON_ADDRESS=daemon)
    ready(fn, 3)
    results = streams(fn.url, *["traced one by one"] * 3)
    assert [r["status"] for r in results] == [200] * 3
    subsegments = []
    while len(subsegments) < 3:
        packet, _ = xray_daemon.recvfrom(65536)
        subsegments.append(json.loads(packet.decode().split("\n", 1)[1]))
    by_request = {s["metadata"]["streamfn"]["usage"]["request_id"]: s for s in subsegments}
    assert set(by_request) == {r["request_id"] for r in results}
    for request_id, subsegment in by_request.items():
        header = dict(p.split("=", 1) for p in fn.record.trace_ids[request_id].split(";"))
        assert subsegment["name"] == "## echo.stream"
        assert (subsegment["trace_id"], subsegment["parent_id"]) == (
            header["Root"],
            header["Parent"],
        )


def test_a_deadline_ends_one_stream_and_not_the_others(managed: Start) -> None:
    fn = managed(2, timeout_s=4, STREAMFN_ECHO_DELAY_MS="200")
    ready(fn, 2)
    long, short = {}, {}
    first = threading.Thread(target=stream, args=(fn.url, " ".join(["long"] * 100), long))
    first.start()
    fn.wait_for("next")
    time.sleep(1.3)  # the second invocation is taken later: its deadline is later too
    stream(fn.url, " ".join(["short"] * 6), short)
    first.join(30)

    # The first stream reached its deadline (4 s from its invoke, less the 2 s margin)...
    name, data, ended_at = long["events"][-1]
    assert (name, json.loads(data)["type"]) == ("error", "timeout")
    # ...while the second, invoked 1.3 s later with a deadline of its own, streamed on past it
    # and ended whole.
    assert short["events"][-1][0] == "done"
    assert "".join(t[1] for t in tokens(short)) == " ".join(["short"] * 6)
    assert tokens(short)[-1][2] > ended_at
    deadlines = [fn.record.deadlines[r["request_id"]] for r in (long, short)]
    assert deadlines[1] - deadlines[0] > 1000
    assert fn.record.runtime_starts == 1  # a timeout there ends an invocation, not the process


def test_an_invocation_that_ignores_its_deadline_gives_its_slot_back(managed: Start) -> None:
    fn = managed(2, timeout_s=1.5, STREAMFN_LAMBDA_APP=f"{HERE}:app")
    ready(fn, 2)
    overstaying: dict[str, Any] = {}

    def call(out: dict[str, Any]) -> None:
        out["status"] = httpx.get(f"{fn.url}/overstays", timeout=30).status_code

    caller = threading.Thread(target=call, args=(overstaying,))
    caller.start()
    caller.join(30)
    assert overstaying["status"] == 502  # failed by its deadline, as a function error
    # Lambda does not stop it there; the runtime cancels it just after its deadline, answers for
    # it (refused, if late), and the slot asks again: both slots serve two requests at once.
    wait_for(lambda: sum(c == "asked" for _, c, _ in fn.record.calls) >= 3, "the slot back")
    again = at_once(
        lambda out: out.update(status=httpx.get(f"{fn.url}/seen", timeout=30).status_code),
        (),
        (),
    )
    assert [r["status"] for r in again] == [200, 200]
    assert fn.record.runtime_starts == 1
    assert any("outlived its deadline" in line for line in fn.record.logs)


def test_the_invocation_id_is_echoed_on_response_and_error(managed: Start) -> None:
    fn = managed(2, STREAMFN_LAMBDA_APP=f"{HERE}:app")
    ok = httpx.get(f"{fn.url}/seen?wait=0", timeout=30)
    failed = httpx.get(f"{fn.url}/fail", timeout=30)
    assert (ok.status_code, failed.status_code) == (200, 502)
    [error] = fn.record.invocation_errors
    assert error["errorMessage"] == "failed before the prelude"
    sent = fn.record.invocation_ids
    assert len(sent) == 2
    assert len(set(sent.values())) == 2  # one per attempt
    # Each attempt's id came back on its one answer (a response, an error), as sent.
    assert {rid: [id] for rid, id in sent.items()} == fn.record.echoed


def test_sigterm_drops_the_waiting_nexts_and_lets_running_invocations_finish(
    managed: Start,
) -> None:
    fn = managed(3, STREAMFN_ECHO_DELAY_MS="100")
    ready(fn, 3)
    results: list[dict[str, Any]] = [{}, {}]
    threads = [threading.Thread(target=stream, args=(fn.url, "two words", r)) for r in results]
    for thread in threads:
        thread.start()
    fn.wait_for("next", count=2)
    [environment] = fn.emulator.environments
    child = environment.child
    assert child is not None

    async def terminate() -> int:
        assert child is not None
        child.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(child.wait(), 5)

    stopped = time.monotonic()
    assert fn.call(terminate()) == 0  # the app shut down and the process ended cleanly
    for thread in threads:
        thread.join(30)
    assert [r["events"][-1][0] for r in results] == ["done", "done"]  # finished, whole
    asked_after = [t for t, call, _ in fn.record.calls if call == "asked" and t > stopped]
    assert asked_after == []  # nothing more asked for once stopping


def test_logs_go_to_the_platforms_log_socket_where_it_gives_one(
    managed: Start, tmp_path: Path
) -> None:
    path = tmp_path / "log.sock"
    received = bytearray()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        server.settimeout(60)

        def read_all() -> None:  # stdout's connection, then stderr's
            for _ in range(2):
                connection, _ = server.accept()
                threading.Thread(target=_drain, args=(connection, received), daemon=True).start()

        accepting = threading.Thread(target=read_all, daemon=True)
        accepting.start()
        fn = managed(2, _LAMBDA_TELEMETRY_LOG_FD_PROVIDER_SOCKET=str(path))
        ready(fn, 2)
        response = httpx.post(f"{fn.url}/chat/stream", json=chat("logged"), timeout=30)
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        wait_for(lambda: request_id.encode() in received, "the request's log line on the socket")
    assert not any(request_id in line for line in fn.record.logs)  # not on stdout


def _drain(connection: socket.socket, into: bytearray) -> None:
    with connection:
        while data := connection.recv(65536):
            into += data
