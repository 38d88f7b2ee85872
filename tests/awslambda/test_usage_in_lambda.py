"""Usage records, logs, metrics and traces from the Lambda runtime, through the function URL
emulator: records land before the next invocation, in DynamoDB (moto on loopback); logs and
EMF metrics go to stdout; the X-Ray subsegment goes to a daemon address on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.lambda_emulator import EmulatorThread
from tests.awslambda.test_streaming_runtime import chat, sse
from tests.fakes.aws import Moto, create_keys_table, create_usage_table
from tests.waiting import wait_for

Start = Callable[..., EmulatorThread]


def test_each_record_is_written_after_its_stream_and_before_the_next_invocation(
    emulator: Start, tmp_path: Path
) -> None:
    usage_file = tmp_path / "usage.jsonl"
    fn = emulator(
        STREAMFN_LAMBDA_APP="tests.awslambda.apps:usage_to_file", TEST_USAGE_FILE=str(usage_file)
    )
    request_ids, client_done = [], []
    for i in range(3):
        response, events = sse(f"{fn.url}/chat/stream", chat(f"request number {i}"))
        client_done.append(time.monotonic())
        assert events[-1].event == "done"
        request_ids.append(response.headers["x-request-id"])

    def writes() -> dict[str, float]:
        lines = usage_file.read_text().splitlines() if usage_file.exists() else []
        # Settled records only: each request's record is also opened (status 0) at its start.
        settled = [w for w in map(json.loads, lines) if w["status"] != 0]
        return {w["request_id"]: w["at"] for w in settled} if len(settled) == 3 else {}

    written = wait_for(writes, "three settled usage records")
    # The runtime asks for a fourth invocation after the third record: an "asked" per record.
    wait_for(lambda: sum(what == "asked" for _, what, _ in fn.record.calls) >= 4, "4 asks")
    calls = fn.record.calls
    for request_id, done in zip(request_ids, client_done, strict=True):
        [end] = [t for t, what, rid in calls if what == "response-end" and rid == request_id]
        # The client had its whole stream before the record was written (the store takes 0.3 s)...
        assert end < written[request_id]
        assert done < written[request_id]
        # ...and the runtime asked for another invocation only once the record was written.
        asked = [t for t, what, _ in calls if what == "asked" and t > end]
        assert asked[0] > written[request_id]


@pytest.fixture
def xray_daemon() -> Iterator[socket.socket]:
    """A UDP socket on loopback standing in for the X-Ray daemon."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        yield sock


def test_records_logs_metrics_and_traces_in_lambda(
    emulator: Start, moto: Moto, xray_daemon: socket.socket
) -> None:
    table = f"usage-{uuid.uuid4().hex[:8]}"
    dynamodb = moto.dynamodb()
    create_usage_table(dynamodb, table)
    daemon = f"127.0.0.1:{xray_daemon.getsockname()[1]}"
    fn = emulator(
        **moto.env,
        STREAMFN_USAGE_TABLE=table,
        STREAMFN_ECHO_DELAY_MS="5",
        AWS_XRAY_DAEMON_ADDRESS=daemon,
        OLLAMA_HOST="http://127.0.0.1:9",  # nothing listens there: upstream_unavailable
    )
    ok, events = sse(f"{fn.url}/chat/stream", chat("counted in the cloud"))
    assert events[-1].event == "done"
    failed, _ = sse(f"{fn.url}/chat/stream", chat("x", provider="ollama"))
    assert failed.status_code == 502
    ok_id, failed_id = ok.headers["x-request-id"], failed.headers["x-request-id"]
    header = dict(part.split("=", 1) for part in fn.record.trace_ids[ok_id].split(";"))

    # The records: in the table by the time the runtime asked for the invocation after each.
    # The first is, since the second was answered; the second's reply went before it settled,
    # so until then its table item is the record opened when it reached Ollama (interrupted).
    def item(request_id: str) -> dict[str, Any]:
        key = {"request_id": {"S": request_id}}
        return dynamodb.get_item(TableName=table, Key=key).get("Item", {})

    def settled(request_id: str) -> dict[str, Any] | None:
        found = item(request_id)
        return found if found and found["outcome"] != {"S": "interrupted"} else None

    record = item(ok_id)
    assert (record["outcome"], record["output_tokens"]) == ({"S": "finished"}, {"N": "4"})
    failure = wait_for(lambda: settled(failed_id), "the second record, settled")
    assert failure["error_type"] == {"S": "upstream_unavailable"}
    assert failure["status"] == {"N": "502"}

    # One JSON log line per request end, with the request and trace ids of its invocation.
    def ended() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in fn.record.logs if line.startswith("{")]
        return [line for line in lines if line.get("message") == "request ended"]

    lines = wait_for(lambda: len(ended()) == 2 and ended(), "two request-end log lines")
    by_id = {line["request_id"]: line for line in lines}
    assert by_id[ok_id]["outcome"] == "finished"
    assert by_id[ok_id]["xray_trace_id"] == header["Root"]
    assert by_id[failed_id]["error_type"] == "upstream_unavailable"
    assert "counted in the cloud" not in json.dumps(lines)

    # EMF documents on stdout: one per request, one more for the error, by its type.
    emf = [json.loads(line) for line in fn.record.logs if line.startswith('{"_aws"')]
    requests = [d for d in emf if "Requests" in d]
    assert {(d["provider"], d["model"]) for d in requests} == {
        ("echo", "echo"),
        ("ollama", "llama3.2"),
    }
    for document in requests:
        [definition] = document["_aws"]["CloudWatchMetrics"]
        assert definition["Namespace"] == "streamfn"
        assert definition["Dimensions"] == [["provider", "model", "service"]]
    echo = next(d for d in requests if d["provider"] == "echo")
    assert echo["OutputTokens"] == [4.0]
    assert echo["TimeToFirstToken"][0] >= 0
    assert echo["OutputTokensPerSecond"][0] > 0
    [errors] = [d for d in emf if "Errors" in d]
    assert errors["error_type"] == "upstream_unavailable"
    assert errors["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["provider", "model", "error_type", "service"]
    ]

    # The provider call as an X-Ray subsegment of the invocation's trace.
    subsegments = []
    while len(subsegments) < 2:
        packet, _ = xray_daemon.recvfrom(65536)
        preamble, document = packet.decode().split("\n", 1)
        assert json.loads(preamble) == {"format": "json", "version": 1}
        subsegments.append(json.loads(document))
    [echo_call] = [s for s in subsegments if s["name"] == "## echo.stream"]
    assert echo_call["trace_id"] == header["Root"]
    assert echo_call["parent_id"] == header["Parent"]
    assert echo_call["annotations"] == {"provider": "echo", "model": "echo", "outcome": "finished"}
    assert 0 < echo_call["end_time"] - echo_call["start_time"] < 10


def test_in_lambda_auth_is_on_by_default_with_keys_from_the_table(
    emulator: Start, moto: Moto
) -> None:
    """As deployed: no STREAMFN_AUTH (Lambda's default is api_key), keys in DynamoDB."""
    table = f"keys-{uuid.uuid4().hex[:8]}"
    create_keys_table(moto.dynamodb(), table)
    env = {**moto.env, "PYTHONPATH": str(Path(__file__).parents[2])}
    created = subprocess.run(
        [sys.executable, "-m", "streamfn.cli", "keys", "--table", table, "create", "--name", "ci"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    key = created.stdout.strip()
    fn = emulator(**moto.env, STREAMFN_AUTH=None, STREAMFN_KEYS_TABLE=table)  # type: ignore[arg-type]
    refused = httpx.post(f"{fn.url}/chat/stream", json=chat("no key"), timeout=30)
    assert refused.status_code == 401
    ok, events = sse(
        f"{fn.url}/chat/stream", chat("with a key"), headers={"authorization": f"Bearer {key}"}
    )
    assert ok.status_code == 200
    assert events[-1].event == "done"
