"""The activity log on SQLite: append-only, read newest first."""

from __future__ import annotations

import sqlite3
from typing import Any

from server.core.errors import AlreadyExists
from server.core.model import ActivityEntry
from server.ports.store import ActivityFilter, Page, PageRequest
from server.store.codec import dump_json, from_us, load_details, to_us
from server.store.sqlite.common import Row, keyset_page
from server.store.sqlite.db import Database, IntegrityViolation


def _entry(row: Row) -> ActivityEntry:
    return ActivityEntry(
        entry_id=row["entry_id"],
        time=from_us(row["time"]),
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        details=load_details(row["details"]),
    )


class SqliteActivity:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: ActivityEntry) -> None:
        params = (
            entry.entry_id,
            to_us(entry.time),
            entry.actor,
            entry.action,
            entry.target,
            dump_json(entry.details),
        )
        try:
            await self._db.write(lambda c: c.execute("INSERT INTO activity VALUES (?, ?, ?, ?, ?, ?)", params))
        except IntegrityViolation:
            raise AlreadyExists("an activity entry with this id exists", field="entryId") from None

    async def list(self, flt: ActivityFilter, page: PageRequest) -> Page[ActivityEntry]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("actor", flt.actor), ("target", flt.target), ("action", flt.action)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if flt.since is not None:
            where.append("time >= ?")
            params.append(to_us(flt.since))
        if flt.until is not None:
            where.append("time < ?")
            params.append(to_us(flt.until))

        def run(c: sqlite3.Connection) -> Page[ActivityEntry]:
            return keyset_page(
                c,
                kind="activity",
                table="activity",
                sort_col="time",
                id_col="entry_id",
                where=where,
                params=params,
                page=page,
                descending=True,
                to_item=_entry,
            )

        return await self._db.read(run)
