"""Choose and open the store: MongoDB when MONGO_URI is set, else SQLite under DATA_DIR."""

from __future__ import annotations

import pathlib

from server.ports.store import Store
from server.store.mongo import open_mongo_store
from server.store.sqlite import open_sqlite_store
from server.store.sqlite.store import DB_FILENAME


async def open_store(mongo_uri: str | None, data_dir: pathlib.Path) -> Store:
    """Open the store with its schema or indexes in place. Unavailable when the database
    cannot be reached or opened; InvalidArgument for a malformed URI."""
    if mongo_uri:
        return await open_mongo_store(mongo_uri)
    return await open_sqlite_store(data_dir / DB_FILENAME)
