"""The one way tests open a SQLite store: a fresh database in a directory of the test's own,
opened the way the server opens it (DATA_DIR, no MONGO_URI) and always closed afterwards.

The `store` fixture in tests/conftest.py wraps this for a test that needs one store; a test
that needs a fresh store per generated example (hypothesis) uses the context manager itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from server.ports.store import Store
from server.store.factory import open_store


@asynccontextmanager
async def sqlite_store(data_dir: Path) -> AsyncIterator[Store]:
    store = await open_store(None, data_dir)
    try:
        yield store
    finally:
        await store.close()
