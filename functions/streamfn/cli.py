"""`streamfn usage`: token totals per day, provider and model, from the local usage store."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from streamfn.settings import Settings
from streamfn.stores import SqliteUsageStore

_HEADER = ("day", "provider", "model", "requests", "input", "output", "estimated", "failed",
           "cancelled")  # fmt: skip


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def usage(db: Path, days: int | None) -> int:
    if not db.exists():
        sys.stderr.write(f"no usage records yet: {db} does not exist\n")
        return 1
    store = SqliteUsageStore(db)
    try:
        since = time.time() - days * 86400 if days else 0
        totals = store.totals(since=since)
    finally:
        store.close()
    if not totals:
        sys.stdout.write("no usage records in that period\n")
        return 0
    rows = [_HEADER] + [
        (
            t.day,
            t.provider,
            t.model,
            *(str(n) for n in (t.requests, t.input_tokens, t.output_tokens)),
            *(str(n) for n in (t.estimated, t.failed, t.cancelled)),
        )
        for t in totals
    ]
    sys.stdout.write(_table(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="streamfn")
    commands = parser.add_subparsers(dest="command", required=True)
    totals = commands.add_parser(
        "usage",
        help="token totals per day (UTC), provider and model",
        description="Token totals per day (UTC), provider and model, newest first. "
        "'estimated' counts requests cut short before the provider reported usage.",
    )
    totals.add_argument(
        "--db",
        type=Path,
        default=None,
        help="the SQLite usage file (default: STREAMFN_USAGE_DB, else the server's default)",
    )
    totals.add_argument("--days", type=int, default=None, help="only the last N days")
    args = parser.parse_args(argv)
    sys.exit(usage(args.db or Settings().usage_db, args.days))
