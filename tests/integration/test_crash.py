"""A server killed mid-stream (`kill -9`) and started again on the same files: what its streams'
clients get, and what its usage store holds.

Every resume of a killed stream replays what the log kept and ends, within seconds, with an
`interrupted` error; once a client has seen that end it gets 204 (EventSource stops); a stop
of a dead stream ends it too; and every request that reached the provider has a usage record,
`interrupted`, its output estimated from the log.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource

from streamfn.resume import LEASE_S
from tests.processes import ServerProcess
from tests.waiting import wait_for

STREAMS = 8
WORDS = 400  # at 20 ms a word: 8 s a stream, far longer than the test waits before the kill


def server_on(data: Path) -> ServerProcess:
    """local/serve.py in a child process, on `data`'s files."""
    return ServerProcess(
        {
            "STREAMFN_ECHO_DELAY_MS": "20",
            "STREAMFN_STREAMS_DB": str(data / "streams.sqlite3"),
            "STREAMFN_USAGE_DB": str(data / "usage.sqlite3"),
        }
    )


def prompt() -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(WORDS))}]}


def read(response: httpx.Response, count: int | None = None) -> list[Any]:
    events = []
    for sse in EventSource(response).iter_sse():
        events.append(sse)
        if count is not None and len(events) == count:
            break
    return events


def usage_rows(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return {r["request_id"]: dict(r) for r in connection.execute("SELECT * FROM usage")}


def test_after_kill_9_resumes_end_interrupted_and_no_usage_record_is_lost(tmp_path: Path) -> None:
    data = tmp_path
    first = server_on(data)
    ids = [f"crash-{uuid.uuid4().hex}" for _ in range(STREAMS)]
    seen: dict[str, list[Any]] = {}
    clients = [httpx.Client(timeout=10) for _ in ids]
    try:
        for client, id in zip(clients, ids, strict=True):
            body = {**prompt(), "stream_id": id}
            response = client.send(
                client.build_request("POST", f"{first.url}/chat/stream", json=body), stream=True
            )
            assert response.status_code == 200
            seen[id] = read(response, 5)
        time.sleep(0.5)  # a few batches into the log
        first.kill()
    finally:
        for client in clients:
            client.close()

    second = server_on(data)
    try:
        with httpx.Client(timeout=30) as client:
            # The first half resume; the other half nobody comes back for.
            for id in ids[: STREAMS // 2]:
                started = time.monotonic()
                last = seen[id][-1].id
                with client.stream(
                    "GET", f"{second.url}/chat/stream/{id}", headers={"Last-Event-ID": last}
                ) as response:
                    assert response.status_code == 200
                    rest = read(response)
                took = time.monotonic() - started
                assert took < LEASE_S + 4, f"{id}: the resume took {took:.1f} s"
                numbers = [int(e.id.rpartition(":")[2]) for e in seen[id] + rest]
                assert numbers == list(range(1, len(numbers) + 1))
                assert len(rest) > 1  # what the log kept after the fifth event, then the end
                assert rest[-1].event == "error"
                assert json.loads(rest[-1].data)["type"] == "interrupted"
                # Ended now: a later resume replays and ends; one that saw the end gets 204.
                again = client.get(f"{second.url}/chat/stream/{id}?after=5")
                assert again.status_code == 200
                assert again.text.endswith(rest[-1].data + "\n\n")
                done = client.get(
                    f"{second.url}/chat/stream?prompt=x&stream_id={id}",
                    headers={"Last-Event-ID": rest[-1].id},
                )
                assert done.status_code == 204
            # A stop of a dead stream ends it at once.
            dead = ids[STREAMS // 2]
            assert client.post(f"{second.url}/chat/stream/{dead}/stop").status_code == 202
            with client.stream("GET", f"{second.url}/chat/stream/{dead}?after=5") as response:
                tail = read(response)
            assert json.loads(tail[-1].data)["type"] == "interrupted"

        # The rest are found by the restarted server's sweep. Every request has its record.
        def recovered() -> dict[str, dict[str, Any]] | None:
            rows = usage_rows(data / "usage.sqlite3")
            done = [r for r in rows.values() if r["outcome"] == "interrupted" and r["status"]]
            return rows if len(done) == STREAMS else None

        rows = wait_for(recovered, "interrupted usage records for every stream", 20)
        assert len(rows) == STREAMS
        for row in rows.values():
            assert (row["outcome"], row["status"], row["error_type"]) == (
                "interrupted",
                200,
                "interrupted",
            )
            assert row["usage_estimated"]
            assert row["output_tokens"] >= 5  # at least what the clients saw
            assert row["input_tokens"] > 0
    finally:
        second.stop()
