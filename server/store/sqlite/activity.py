"""The activity log on SQLite: append-only, read newest first."""

from __future__ import annotations

import sqlite3

from server.core.model import ActivityEntry
from server.ports.store import ActivityFilter, Page, PageRequest
from server.store.codec import entry_from, entry_matches, entry_record, to_us
from server.store.sqlite.common import already_exists, equal_where, insert_sql, keyset_page
from server.store.sqlite.db import Database, IntegrityViolation

_UNIQUE = {"activity.entry_id": "entryId"}


class SqliteActivity:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: ActivityEntry) -> None:
        sql, params = insert_sql("activity", entry_record(entry))
        try:
            await self._db.write(lambda c: c.execute(sql, params))
        except IntegrityViolation as exc:
            raise already_exists(exc, _UNIQUE, "an activity entry") from None

    async def list(self, flt: ActivityFilter, page: PageRequest) -> Page[ActivityEntry]:
        where, params = equal_where(entry_matches(flt))
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
                to_item=entry_from,
            )

        return await self._db.read(run)
