"""`streamfn usage`, the installed console script, over a real SQLite file and a deployed
stack's DynamoDB table (moto's server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streamfn.stores import DynamoDBUsageStore, SqliteUsageStore
from streamfn.usage import UsageRecord
from tests.fakes.aws import Moto, create_usage_table

SCRIPT = Path(sys.executable).parent / "streamfn"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_usage_prints_totals_per_day_provider_and_model(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    store = SqliteUsageStore(db)
    for n, (provider, model, output, estimated, cost) in enumerate(
        [
            ("openai", "gpt-4o-mini", 12, False, 0.0000222),
            ("openai", "gpt-4o-mini", 30, True, 0.000033),
            ("anthropic", "claude-haiku-4-5", 7, False, None),  # a price not known
        ]
    ):
        store.write_sync(
            UsageRecord(
                request_id=f"r{n}",
                started_at=1_764_000_000.0,
                identity=None,
                provider=provider,
                model=model,
                outcome="cancelled" if estimated else "finished",
                status=200,
                input_tokens=100,
                output_tokens=output,
                usage_estimated=estimated,
                duration_ms=10.0,
                client_disconnected=estimated,
                cost_usd=cost,
            )
        )
    store.close()
    result = run("usage", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "day         provider   model             requests  input  output  estimated  failed  "
        "cancelled  cost_usd",
        "2025-11-24  anthropic  claude-haiku-4-5         1    100       7          0       0  "
        "        0   unknown",
        "2025-11-24  openai     gpt-4o-mini              2    200      42          1       0  "
        "        1  0.000055",
    ]
    # --days counts back from now: a record from 2025 is outside the last week.
    recent = run("usage", "--db", str(db), "--days", "7")
    assert recent.stdout == "no usage records in that period\n"


def test_usage_without_a_store_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.sqlite3"
    result = run("usage", env={"STREAMFN_USAGE_DB": str(missing), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert str(missing) in result.stderr


def record(n: int, started_at: float, provider: str, output: int, outcome: str) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{n}",
        started_at=started_at,
        identity=None,
        provider=provider,
        model="m",
        outcome=outcome,  # type: ignore[arg-type]
        status=200,
        input_tokens=10,
        output_tokens=output,
        usage_estimated=False,
        duration_ms=5.0,
    )


def test_usage_reads_a_deployed_stacks_table_by_day(
    moto: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against moto's server: the table as template.yaml declares it (with its day index),
    found by --table, by the stack's output (--stack) and by STREAMFN_USAGE_TABLE."""
    table = f"usage-{uuid.uuid4().hex[:8]}"
    create_usage_table(moto.dynamodb(), table)
    store = DynamoDBUsageStore(table, ttl_days=90)
    now = time.time()
    records = [
        record(1, now, "openai", 5, "finished"),
        record(2, now, "openai", 7, "errored"),
        record(3, now - 86400, "anthropic", 3, "cancelled"),
        record(4, now - 40 * 86400, "openai", 100, "finished"),  # outside --days 3
    ]
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    env = dict(os.environ)
    for r in records:
        store.write_sync(r)
    today = time.strftime("%Y-%m-%d", time.gmtime(now))
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(now - 86400))
    # No cost: these records have none (tests/integration/test_cost.py totals some).
    expected = [
        "day         provider   model  requests  input  output  estimated  failed  cancelled"
        "  cost_usd",
        f"{today}  openai     m             2     20      12          0       1          0"
        "   unknown",
        f"{yesterday}  anthropic  m             1     10       3          0       0          1"
        "   unknown",
    ]
    by_table = run("usage", "--table", table, "--days", "3", env=env)
    assert by_table.returncode == 0, by_table.stderr
    assert by_table.stdout.splitlines() == expected
    moto.client("cloudformation").create_stack(
        StackName="streamfn-test",
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"UsageTableName": {"Value": table}},
            }
        ),
    )
    by_stack = run("usage", "--stack", "streamfn-test", "--days", "3", env=env)
    assert by_stack.stdout.splitlines() == expected, by_stack.stderr
    from_settings = run("usage", "--days", "3", env={**env, "STREAMFN_USAGE_TABLE": table})
    assert from_settings.stdout.splitlines() == expected
    # The default period is the table's retention: the 40-day-old record is in it.
    assert "100" in run("usage", "--table", table, env=env).stdout
