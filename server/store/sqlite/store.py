"""The SQLite store: the aggregates over one Database."""

from __future__ import annotations

import pathlib

from server.store.sqlite.activity import SqliteActivity
from server.store.sqlite.db import Database
from server.store.sqlite.devices import SqliteDevices
from server.store.sqlite.ota import SqliteOtaJobs, SqliteRollouts
from server.store.sqlite.users import SqliteUsers

DB_FILENAME = "control-plane.db"


class SqliteStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.users = SqliteUsers(db)
        self.devices = SqliteDevices(db)
        self.ota_jobs = SqliteOtaJobs(db)
        self.rollouts = SqliteRollouts(db)
        self.activity = SqliteActivity(db)

    async def ping(self) -> None:
        await self.db.ping()

    async def close(self) -> None:
        await self.db.close()


async def open_sqlite_store(path: pathlib.Path) -> SqliteStore:
    """Open (creating and migrating as needed) the database file at `path`."""
    db = Database(path)
    try:
        await db.open()
    except BaseException:
        await db.close()
        raise
    return SqliteStore(db)
