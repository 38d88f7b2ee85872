"""Usage records in the PostgreSQL a fleet shares (`STREAMFN_DATABASE_URL`)."""

from __future__ import annotations

from streamfn.postgres import Database
from streamfn.usage import FAILED, Totals, UsageRecord

_COLUMNS = tuple(UsageRecord.__dataclass_fields__)
# A request's record is opened at its start and replaced when it settles.
_UPSERT = (
    f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES ({', '.join('%s' for _ in _COLUMNS)}) "
    "ON CONFLICT (request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "request_id")
)

# Totals per UTC day, provider and model, newest day first.
_TOTALS = f"""
SELECT to_char(to_timestamp(started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
       provider, model, count(*), sum(input_tokens)::bigint, sum(output_tokens)::bigint,
       sum(usage_estimated::int)::bigint,
       sum((outcome IN ({", ".join(f"'{o}'" for o in sorted(FAILED))}))::int)::bigint,
       sum((outcome = 'cancelled')::int)::bigint, sum(cost_usd)
FROM usage WHERE started_at >= %s
GROUP BY day, provider, model
ORDER BY day DESC, provider, model
"""


class PostgresUsageStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def write(self, record: UsageRecord) -> None:
        values = [getattr(record, c) for c in _COLUMNS]
        await self._db.execute(_UPSERT, tuple(values))

    def totals(self, since: float = 0) -> list[Totals]:
        """Totals per day, provider and model of the records started at or after `since`."""
        with self._db.connect_sync() as connection:
            rows = connection.execute(_TOTALS, (since,)).fetchall()
        return [Totals(*row) for row in rows]

    async def aclose(self) -> None:
        await self._db.aclose()
