"""Usage records written in batches (streamfn.stores.batches), into a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from streamfn.stores import SqliteUsageStore
from streamfn.stores.batches import Batches
from streamfn.usage import UsageRecord


def record(i: int, **fields: object) -> UsageRecord:
    values: dict[str, object] = {
        "request_id": f"r{i}",
        "started_at": 1_700_000_000.0 + i,
        "identity": None,
        "provider": "openai",
        "model": "m",
        "outcome": "finished",
        "status": 200,
        "input_tokens": i,
        "output_tokens": 1,
        "usage_estimated": False,
        "duration_ms": 1.0,
        "ttft_ms": 1.0,
        "finish_reason": "stop",
        "error_type": None,
        "client_disconnected": False,
    }
    return UsageRecord(**{**values, **fields})  # type: ignore[arg-type]


class Counted(SqliteUsageStore):
    """The store, counting its transactions and the records in each."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions: list[int] = []

    def write_many_sync(self, records: Sequence[UsageRecord]) -> None:
        self.transactions.append(len(records))
        super().write_many_sync(records)


async def test_records_that_come_together_are_one_transaction_each_batch(tmp_path: Path) -> None:
    store = Counted(tmp_path / "usage.sqlite3")
    await asyncio.gather(*(store.write(record(i)) for i in range(300)))
    await store.aclose()
    assert sum(store.transactions) == 300
    assert len(store.transactions) < 30, store.transactions  # the first alone, then batches
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        rows = db.execute("SELECT request_id, input_tokens FROM usage ORDER BY input_tokens")
        assert [r[0] for r in rows] == [f"r{i}" for i in range(300)]


async def test_a_settled_record_replaces_the_opened_one_in_the_same_batch(tmp_path: Path) -> None:
    store = SqliteUsageStore(tmp_path / "usage.sqlite3")
    opened = record(1, outcome="cancelled", output_tokens=0)
    settled = record(1, output_tokens=42)
    await asyncio.gather(store.write(record(0)), store.write(opened), store.write(settled))
    await store.aclose()
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        [(outcome, tokens)] = db.execute(
            "SELECT outcome, output_tokens FROM usage WHERE request_id = 'r1'"
        ).fetchall()
    assert (outcome, tokens) == ("finished", 42)


async def test_a_failing_item_fails_its_own_write_only() -> None:
    stored: list[int] = []
    gate = threading.Event()

    def store(items: Sequence[int]) -> None:
        gate.wait(5)
        if 13 in items and len(items) == 1:
            raise ValueError("thirteen")
        if 13 in items:
            raise ValueError("a batch with thirteen in it")
        stored.extend(items)

    batches: Batches[int] = Batches(store)
    first = asyncio.ensure_future(batches.write(0))
    await asyncio.sleep(0.01)  # the first batch is being stored: the rest wait together
    rest = [asyncio.ensure_future(batches.write(i)) for i in range(10, 16)]
    gate.set()
    await first
    outcomes = await asyncio.gather(*rest, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == ["NoneType"] * 3 + ["ValueError"] + [
        "NoneType"
    ] * 2
    assert str(outcomes[3]) == "thirteen"
    assert sorted(stored) == [0, 10, 11, 12, 14, 15]


async def test_closing_waits_for_what_is_being_written(tmp_path: Path) -> None:
    store = SqliteUsageStore(tmp_path / "usage.sqlite3")
    writes = [asyncio.ensure_future(store.write(record(i))) for i in range(50)]
    await asyncio.sleep(0)
    await store.aclose()
    assert all(w.done() for w in writes)
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM usage").fetchone() == (50,)


def test_one_store_serves_one_event_loop_after_another(tmp_path: Path) -> None:
    store = SqliteUsageStore(tmp_path / "usage.sqlite3")
    for run in range(3):
        asyncio.run(store.write(record(run)))
    store.close()
    with sqlite3.connect(tmp_path / "usage.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM usage").fetchone() == (3,)
