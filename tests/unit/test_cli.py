"""`streamfn usage`, the installed console script, over a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamfn.stores import SqliteUsageStore
from streamfn.usage import UsageRecord

SCRIPT = Path(sys.executable).parent / "streamfn"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_usage_prints_totals_per_day_provider_and_model(tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite3"
    store = SqliteUsageStore(db)
    for n, (provider, model, output, estimated) in enumerate(
        [
            ("openai", "gpt-4o-mini", 12, False),
            ("openai", "gpt-4o-mini", 30, True),
            ("anthropic", "claude-haiku-4-5", 7, False),
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
            )
        )
    store.close()
    result = run("usage", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "day         provider   model             requests  input  output  estimated  failed  "
        "cancelled",
        "2025-11-24  anthropic  claude-haiku-4-5         1    100       7          0       0  "
        "        0",
        "2025-11-24  openai     gpt-4o-mini              2    200      42          1       0  "
        "        1",
    ]
    # --days counts back from now: a record from 2025 is outside the last week.
    recent = run("usage", "--db", str(db), "--days", "7")
    assert recent.stdout == "no usage records in that period\n"


def test_usage_without_a_store_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.sqlite3"
    result = run("usage", env={"STREAMFN_USAGE_DB": str(missing), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert str(missing) in result.stderr
