"""Usage records through a real uvicorn server, kept in a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from streamfn.app import create_app
from streamfn.chunks import StreamError, TextDelta
from streamfn.settings import Settings
from streamfn.stores import SqliteUsageStore
from streamfn.usage import UsageRecord, UsageStore
from tests.providers import Observed, Scripted, spec
from tests.sse_client import leave_after_tokens, stream, text_of, user
from tests.waiting import wait_for

Serve = Callable[[ASGIApp], str]


def records(db: Path, count: int = 1) -> list[dict[str, Any]]:
    """The rows in `db` once there are `count` of them, settled (a record is opened when its
    request reaches a provider, status 0, and replaced once its response has been sent)."""

    def rows() -> list[dict[str, Any]]:
        if not db.exists():
            return []
        with sqlite3.connect(db) as connection:
            connection.row_factory = sqlite3.Row
            try:
                found = connection.execute("SELECT * FROM usage ORDER BY started_at").fetchall()
            except sqlite3.OperationalError:  # the table is not there yet
                return []
        settled = [dict(r) for r in found if r["status"] != 0]
        return settled if len(settled) >= count and len(settled) == len(found) else []

    return wait_for(rows, f"{count} usage records in {db}")


def app_with(db: Path, *steps: Any, **settings: Any) -> ASGIApp:
    """The app with a scripted provider (or echo when no steps), recording into `db`."""
    providers = [spec(Scripted(*steps), name="scripted", default_model="m-1")] if steps else None
    config = Settings(
        usage_db=db, echo_delay_ms=0, default_provider="scripted" if steps else None, **settings
    )
    return create_app(config, providers=providers)


async def test_a_finished_stream_is_recorded_with_the_providers_usage(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    url = serve(app_with(db))
    response, events = await stream(
        client, f"{url}/chat/stream", user("one two three", model="echo")
    )
    assert text_of(events) == "one two three"
    [row] = records(db)
    assert row["request_id"] == response.headers["x-request-id"]
    assert row["identity"] == "127.0.0.1"
    assert (row["provider"], row["model"], row["outcome"], row["status"]) == (
        "echo",
        "echo",
        "finished",
        200,
    )
    assert (row["input_tokens"], row["output_tokens"], row["usage_estimated"]) == (3, 3, 0)
    assert row["finish_reason"] == "stop"
    assert row["error_type"] is None
    assert row["client_disconnected"] == 0
    assert 0 <= row["ttft_ms"] <= row["duration_ms"]
    assert abs(row["started_at"] - time.time()) < 60


async def test_echo_refuses_a_model_it_does_not_have_and_records_nothing(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    url = serve(app_with(db))
    response = await client.post(f"{url}/chat/stream", json=user("hi", model="gpt-5"))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "unknown_model",
        "message": "echo has no model 'gpt-5'; its models: echo",
        "retryable": False,
        "param": "model",
    }
    await stream(client, f"{url}/chat/stream", user("then this"))
    [row] = records(db)  # only the second request reached a provider
    assert row["model"] == "echo"


async def test_an_error_mid_stream_is_recorded_with_estimated_usage(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    url = serve(
        app_with(
            db,
            TextDelta("partial "),
            TextDelta("answer"),
            StreamError("upstream_unavailable", "connection reset", retryable=True),
        )
    )
    _, events = await stream(client, f"{url}/chat/stream", user("a question of some length"))
    assert events[-1].event == "error"
    [row] = records(db)
    assert (row["provider"], row["model"], row["outcome"], row["status"]) == (
        "scripted",
        "m-1",
        "errored",
        200,
    )
    assert row["error_type"] == "upstream_unavailable"
    assert row["finish_reason"] is None
    # Usage never arrived: estimated from what was sent and received (about 4 chars a token).
    assert row["usage_estimated"] == 1
    assert row["input_tokens"] == len("a question of some length") // 4 + 1
    assert row["output_tokens"] == (len("partial answer") + 3) // 4
    assert row["ttft_ms"] is not None


async def test_an_error_before_the_first_token_is_recorded_with_its_status(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    url = serve(app_with(db, StreamError("rate_limit", "slow down", retryable=True)))
    response = await client.post(f"{url}/chat/stream", json=user("x"))
    assert response.status_code == 429
    [row] = records(db)
    assert row["request_id"] == response.headers["x-request-id"]
    assert (row["outcome"], row["status"], row["error_type"]) == ("errored", 429, "rate_limit")
    assert row["ttft_ms"] is None


async def test_a_timeout_is_recorded_as_such(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    url = serve(app_with(db, TextDelta("one"), 5.0, TextDelta("late"), idle_timeout_s=0.3))
    _, events = await stream(client, f"{url}/chat/stream", user("x"))
    assert json.loads(events[-1].data)["type"] == "timeout"
    [row] = records(db)
    assert (row["outcome"], row["error_type"], row["usage_estimated"]) == ("timeout", "timeout", 1)
    assert row["output_tokens"] == 1
    assert row["duration_ms"] >= 300


async def test_a_client_that_leaves_is_recorded_as_cancelled(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    observed = Observed(
        Scripted(*[step for i in range(50) for step in (TextDelta(f"t{i} "), 0.05)])
    )
    app = create_app(Settings(usage_db=db, resume_grace_s=0), providers=[spec(observed)])
    url = serve(app)
    await leave_after_tokens(client, f"{url}/chat/stream", user("x"), tokens=2)
    [row] = records(db)
    assert (row["outcome"], row["client_disconnected"], row["usage_estimated"]) == (
        "cancelled",
        1,
        1,
    )
    assert row["finish_reason"] is None
    assert row["error_type"] is None
    assert 2 <= observed.yielded < 50
    assert row["output_tokens"] >= 1


async def test_a_client_that_leaves_before_the_first_token_is_recorded(
    serve: Serve, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite3"
    url = serve(app_with(db, 10.0, TextDelta("never"), resume_grace_s=0))
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{url}/chat/stream", json=user("x"), timeout=0.3)
    [row] = records(db)
    assert (row["outcome"], row["status"], row["client_disconnected"]) == ("cancelled", 499, 1)
    assert row["ttft_ms"] is None


class BlockingStore:
    """Writes only once the test lets it; records what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.written: list[UsageRecord] = []

    async def write(self, record: UsageRecord) -> None:
        while not self.release.is_set():  # noqa: ASYNC110 - the event is set from another thread
            await asyncio.sleep(0.01)
        self.written.append(record)

    async def aclose(self) -> None:
        pass


async def test_the_write_never_delays_the_end_of_the_stream(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    store = BlockingStore()
    url = serve(create_app(Settings(echo_delay_ms=0), usage_store=store))
    # The whole stream, to its end, arrives while the store is still holding the write back.
    _, events = await stream(client, f"{url}/chat/stream", user("not delayed"))
    assert [e.event for e in events][-2:] == ["usage", "done"]
    assert store.written == []
    store.release.set()
    deadline = time.monotonic() + 5
    while len(store.written) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    # The record as opened when the request reached the provider, then the settled one.
    assert [r.outcome for r in store.written] == ["interrupted", "finished"]
    assert [r.status for r in store.written] == [0, 200]


class FailingStore:
    async def write(self, record: UsageRecord) -> None:  # noqa: ARG002
        raise sqlite3.OperationalError("disk I/O error")

    async def aclose(self) -> None:
        pass


class HangingStore:
    async def write(self, record: UsageRecord) -> None:  # noqa: ARG002
        await asyncio.sleep(3600)

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(
    ("store", "settings"),
    [(FailingStore(), {}), (HangingStore(), {"usage_write_timeout_s": 0.2})],
    ids=["failing", "hanging"],
)
async def test_a_store_that_fails_logs_the_whole_record_and_the_stream_is_untouched(
    serve: Serve,
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    store: UsageStore,
    settings: dict[str, Any],
) -> None:
    url = serve(create_app(Settings(echo_delay_ms=0, **settings), usage_store=store))
    with caplog.at_level(logging.INFO, logger="streamfn"):
        response, events = await stream(client, f"{url}/chat/stream", user("still fine"))
        assert text_of(events) == "still fine"
        assert events[-1].event == "done"
        deadline = time.monotonic() + 5
        while not any(r.message == "usage record not stored" for r in caplog.records):
            assert time.monotonic() < deadline, "the failed write was not logged"
            await asyncio.sleep(0.02)
    # The record as opened and the settled one: both failed, both logged whole.
    deadline = time.monotonic() + 15
    while (
        len(failures := [r for r in caplog.records if r.message == "usage record not stored"]) < 2
    ):
        assert time.monotonic() < deadline, "the settled record's failure was not logged"
        await asyncio.sleep(0.02)
    assert [f.usage_record["outcome"] for f in failures] == ["interrupted", "finished"]  # type: ignore[attr-defined]
    failure = failures[-1]
    assert failure.levelno == logging.ERROR
    assert failure.exc_info is not None
    kept = failure.usage_record  # type: ignore[attr-defined]
    assert kept["request_id"] == response.headers["x-request-id"]
    assert (kept["outcome"], kept["output_tokens"]) == ("finished", 2)


async def test_the_request_end_log_line_has_the_record_and_no_content_unless_asked(
    serve: Serve, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    quiet = serve(app_with(tmp_path / "a.sqlite3"))
    loud = serve(app_with(tmp_path / "b.sqlite3", log_content=True))
    with caplog.at_level(logging.INFO, logger="streamfn"):
        for url in (quiet, loud):
            await stream(client, f"{url}/chat/stream", user("private words"))
        records(tmp_path / "a.sqlite3")
        records(tmp_path / "b.sqlite3")
    ended = [r for r in caplog.records if r.message == "request ended"]
    assert len(ended) == 2
    for line in ended:
        assert line.outcome == "finished"  # type: ignore[attr-defined]
        assert line.output_tokens == 2  # type: ignore[attr-defined]
    # Each line is written after its response: under load they may come in either order.
    [loud_line] = [line for line in ended if hasattr(line, "output_text")]
    [quiet_line] = [line for line in ended if line is not loud_line]
    assert "private words" not in str(quiet_line.__dict__)
    assert loud_line.output_text == "private words"  # type: ignore[attr-defined]
    assert loud_line.messages == [{"role": "user", "content": "private words"}]  # type: ignore[attr-defined]
    metrics = [r for r in caplog.records if r.message == "metrics"]
    assert metrics, "the metrics did not reach the log"
    emf = metrics[0].emf  # type: ignore[attr-defined]
    [definition] = emf["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "streamfn"
    assert definition["Dimensions"] == [["provider", "model", "service"]]
    assert {m["Name"] for m in definition["Metrics"]} >= {
        "Requests",
        "Cancelled",
        "OutputTokens",
        "TimeToFirstToken",
    }
    assert (emf["provider"], emf["model"], emf["Requests"], emf["OutputTokens"]) == (
        "echo",
        "echo",
        [1.0],
        [2.0],
    )
    assert emf["Cancelled"] == [0.0]
    assert emf["TimeToFirstToken"][0] >= 0


def test_sqlite_store_totals_per_day_provider_and_model(tmp_path: Path) -> None:
    store = SqliteUsageStore(tmp_path / "usage.sqlite3")
    day = 1_764_000_000.0  # 2025-11-24 16:00 UTC

    def record(n: int, **fields: Any) -> UsageRecord:
        base: dict[str, Any] = {
            "request_id": f"r{n}",
            "started_at": day,
            "identity": None,
            "provider": "openai",
            "model": "gpt",
            "outcome": "finished",
            "status": 200,
            "input_tokens": 10,
            "output_tokens": 5,
            "usage_estimated": False,
            "duration_ms": 100.0,
        }
        return UsageRecord(**{**base, **fields})

    for r in (
        record(1),
        record(2, outcome="errored", usage_estimated=True),
        record(3, model="gpt-mini"),
        record(4, started_at=day + 86400, outcome="cancelled"),
        record(5, provider="anthropic", model="claude", output_tokens=7),
    ):
        store.write_sync(r)
    totals = store.totals()
    assert [(t.day, t.provider, t.model, t.requests) for t in totals] == [
        ("2025-11-25", "openai", "gpt", 1),
        ("2025-11-24", "anthropic", "claude", 1),
        ("2025-11-24", "openai", "gpt", 2),
        ("2025-11-24", "openai", "gpt-mini", 1),
    ]
    gpt = totals[2]
    assert (gpt.input_tokens, gpt.output_tokens, gpt.estimated, gpt.failed) == (20, 10, 1, 1)
    assert totals[0].cancelled == 1
    assert [t.day for t in store.totals(since=day + 1)] == ["2025-11-25"]
    # A record written again (opened, then settled) replaces the first: one request, one row.
    store.write_sync(record(1, outcome="interrupted"))
    gpt = store.totals()[2]
    assert (gpt.requests, gpt.failed) == (2, 2)  # interrupted counts as failed
    store.close()
