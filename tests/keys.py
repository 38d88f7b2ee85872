"""Making API keys for tests, from sync or async code alike."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streamfn.auth import keys
from streamfn.auth.stores import SqliteKeyStore


async def _put(db: Path, record: keys.ApiKey) -> None:
    store = SqliteKeyStore(db)
    try:
        await store.put(record)
    finally:
        await store.aclose()


def create_key(db: Path, name: str = "test", **options: Any) -> tuple[str, keys.ApiKey]:
    """A new key stored in the SQLite file `db`: (the key, its record). Runs the store on a
    thread of its own, so it works where an event loop is already running (Playwright's)."""
    key, record = keys.create(name, **options)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _put(db, record)).result()
    return key, record
