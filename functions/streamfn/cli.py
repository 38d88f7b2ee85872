"""The `streamfn` command: `usage` (token and cost totals from the local usage store, or a
deployed stack's DynamoDB table) and `keys` (API keys: create, list, revoke; in the local
SQLite file, or the DynamoDB table with --table)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from streamfn.auth import keys
from streamfn.auth.keys import KeyStore
from streamfn.auth.stores import DynamoDBKeyStore, PostgresKeyStore, SqliteKeyStore
from streamfn.settings import Settings
from streamfn.stores import DynamoDBUsageStore, SqliteUsageStore

_HEADER = ("day", "provider", "model", "requests", "input", "output", "estimated", "failed",
           "cancelled", "cost_usd")  # fmt: skip


def _table(rows: Sequence[tuple[str, ...]], left: int = 3) -> str:
    """Columns padded to line up; the first `left` to the left, the rest (numbers) right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _stack_output(stack: str, key: str) -> str:
    import boto3

    described = boto3.client("cloudformation").describe_stacks(StackName=stack)
    for output in described["Stacks"][0].get("Outputs", []):
        if output.get("OutputKey") == key:
            return str(output["OutputValue"])
    raise SystemExit(f"stack {stack} has no output {key}")


def usage(
    db: Path,
    days: int | None,
    table: str | None = None,
    retention_days: int = 90,
    database_url: str | None = None,
) -> int:
    if table:
        # A deployed stack's table: one query of its day index per day, never a scan.
        store = DynamoDBUsageStore(table, ttl_days=retention_days)
        totals = store.totals(days or retention_days)
    elif database_url:
        import psycopg

        from streamfn.postgres import Database, DatabaseUnavailable
        from streamfn.stores.postgres import PostgresUsageStore

        try:
            totals = PostgresUsageStore(Database(database_url)).totals(
                since=time.time() - days * 86400 if days else 0
            )
        except (psycopg.OperationalError, DatabaseUnavailable) as exc:
            sys.stderr.write(f"cannot read usage records: {type(exc).__name__}\n")
            return 1
    else:
        if not db.exists():
            sys.stderr.write(f"no usage records yet: {db} does not exist\n")
            return 1
        local = SqliteUsageStore(db)
        try:
            totals = local.totals(since=time.time() - days * 86400 if days else 0)
        finally:
            local.close()
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
            "unknown" if t.cost_usd is None else f"{t.cost_usd:.6f}",
        )
        for t in totals
    ]
    sys.stdout.write(_table(rows))
    return 0


def _key_store(args: argparse.Namespace) -> KeyStore:
    settings = Settings()
    table = args.table or settings.keys_table
    if table:
        return DynamoDBKeyStore(table)
    if settings.database_url and args.db is None:
        from streamfn.postgres import Database

        return PostgresKeyStore(Database(settings.database_url.get_secret_value()))
    return SqliteKeyStore(args.db or settings.keys_db)


async def _keys(args: argparse.Namespace) -> int:
    store = _key_store(args)
    try:
        if args.action == "create":
            expires = args.expires_days * 86400 if args.expires_days else None
            limits = {
                name: value
                for name, value in (
                    ("requests_per_minute", args.rpm),
                    ("concurrent_streams", args.concurrency),
                    ("tokens_per_day", args.tokens_per_day),
                )
                if value is not None
            }
            if args.budget_usd is not None:
                limits["budget_usd"] = args.budget_usd
                limits["budget_period"] = args.budget_period or "day"
            elif args.budget_period is not None:
                sys.stderr.write("--budget-period goes with --budget-usd\n")
                return 2
            if args.models:
                limits["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
            key, record = keys.create(args.name, expires_in_s=expires, limits=limits)
            await store.put(record)
            sys.stdout.write(f"{key}\n")
            sys.stderr.write(
                f"created key {record.id} ({record.name}): the key above is shown only now; "
                "keep it secret\n"
            )
            return 0
        if args.action == "revoke":
            if not await store.revoke(args.id, time.time()):
                sys.stderr.write(f"no key {args.id} that is not already revoked\n")
                return 1
            sys.stdout.write(f"revoked {args.id}\n")
            return 0
        rows = [("id", "name", "created", "expires", "state")]
        now = time.time()
        for record in await store.all():
            state = record.usable(now)
            rows.append(
                (
                    record.id,
                    record.name,
                    _day(record.created_at),
                    _day(record.expires_at) if record.expires_at else "never",
                    "active" if state is None else state.removeprefix("this API key ").rstrip("."),
                )
            )
        sys.stdout.write(_table(rows, left=5) if len(rows) > 1 else "no keys yet\n")
        return 0
    finally:
        await store.aclose()


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive amount")
    return value


def _day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="streamfn")
    commands = parser.add_subparsers(dest="command", required=True)
    totals = commands.add_parser(
        "usage",
        help="token and cost totals per day (UTC), provider and model",
        description="Token and cost totals per day (UTC), provider and model, newest first. "
        "'estimated' counts requests cut short before the provider reported usage; "
        "'cost_usd' is in USD, of the requests whose model has a known price ('unknown' when "
        "none has).",
    )
    totals.add_argument(
        "--db",
        type=Path,
        default=None,
        help="the SQLite usage file (default: STREAMFN_USAGE_DB, else the server's default)",
    )
    totals.add_argument(
        "--table",
        default=None,
        help="a deployed stack's DynamoDB usage table (default: STREAMFN_USAGE_TABLE)",
    )
    totals.add_argument(
        "--stack", default=None, help="a deployed stack's name: its UsageTableName output"
    )
    totals.add_argument(
        "--days",
        type=int,
        default=None,
        help="only the last N days (a table: default its retention, STREAMFN_USAGE_TTL_DAYS)",
    )
    api_keys = commands.add_parser(
        "keys",
        help="API keys: create, list, revoke",
        description="API keys for STREAMFN_AUTH=api_key. Only a hash of each key is stored; "
        "a new key is printed once. Keys live in the local SQLite file (STREAMFN_KEYS_DB), in "
        "PostgreSQL (STREAMFN_DATABASE_URL), or in the DynamoDB table given by --table or "
        "STREAMFN_KEYS_TABLE.",
    )
    api_keys.add_argument("--db", type=Path, default=None, help="the SQLite key file")
    api_keys.add_argument("--table", default=None, help="a DynamoDB table (AWS credentials)")
    actions = api_keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it, once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--expires-days", type=float, default=None, help="expire after N days")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute")
    create.add_argument("--concurrency", type=int, default=None, help="open streams at once")
    create.add_argument("--tokens-per-day", type=int, default=None, help="tokens per UTC day")
    create.add_argument(
        "--budget-usd",
        type=_positive,
        default=None,
        help="what the key may spend per --budget-period, in USD (priced with genai-prices)",
    )
    create.add_argument(
        "--budget-period",
        choices=("day", "month"),
        default=None,
        help="the budget's period, a UTC day (the default) or month",
    )
    create.add_argument(
        "--models", default=None, help="only these provider/model patterns (anthropic/*,...)"
    )
    actions.add_parser("list", help="the keys: id, name, dates, state (never the key)")
    revoke = actions.add_parser("revoke", help="stop a key from working")
    revoke.add_argument("id", help="the key's id (the part after sfn_)")
    args = parser.parse_args(argv)
    if args.command == "keys":
        sys.exit(asyncio.run(_keys(args)))
    settings = Settings()
    table = args.table or (args.stack and _stack_output(args.stack, "UsageTableName"))
    if not table and args.db is None:
        table = settings.usage_table
    url = settings.database_url.get_secret_value() if settings.database_url else None
    days, retention = args.days, settings.usage_ttl_days
    sys.exit(usage(args.db or settings.usage_db, days, table, retention, None if args.db else url))


if __name__ == "__main__":
    main()
