"""Usage stores: SQLite locally, PostgreSQL for a fleet, DynamoDB in AWS. Each implements
`streamfn.usage.UsageStore`."""

from __future__ import annotations

import logging

from streamfn.settings import Settings, in_lambda
from streamfn.stores.dynamodb import DynamoDBUsageStore
from streamfn.stores.sqlite import SqliteUsageStore
from streamfn.usage import UsageStore

__all__ = ["DynamoDBUsageStore", "SqliteUsageStore", "open_store"]

logger = logging.getLogger(__name__)


def open_store(settings: Settings) -> UsageStore | None:
    """The store `settings` ask for: a DynamoDB table if named, else PostgreSQL, else the SQLite
    file; none in Lambda without a table (its files vanish with the environment), where the
    request-end log line is the only record."""
    if not settings.usage_records:
        return None
    if settings.usage_table:
        return DynamoDBUsageStore(
            settings.usage_table,
            ttl_days=settings.usage_ttl_days,
            timeout_s=settings.usage_write_timeout_s,
        )
    if settings.database_url:
        from streamfn.postgres import database
        from streamfn.stores.postgres import PostgresUsageStore

        return PostgresUsageStore(database(settings.database_url.get_secret_value()))
    if in_lambda():
        logger.warning(
            "STREAMFN_USAGE_TABLE is not set: usage records go to the log only, not to a store"
        )
        return None
    return SqliteUsageStore(settings.usage_db)
