"""The activity log on SQLite: append-only, read newest first."""

from __future__ import annotations

from server.core.model import ActivityEntry
from server.ports.store import ActivityFilter, Page, PageRequest
from server.store.codec import ACTIVITY_LIST, entry_from, entry_matches, entry_record, to_us
from server.store.sqlite.common import equal_where, insert, keyset_page
from server.store.sqlite.db import Database

_UNIQUE = {"activity.entry_id": "entryId"}


class SqliteActivity:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: ActivityEntry) -> None:
        await insert(self._db, "activity", entry_record(entry), _UNIQUE, "an activity entry")

    async def list(self, flt: ActivityFilter, page: PageRequest) -> Page[ActivityEntry]:
        where, params = equal_where(entry_matches(flt))
        if flt.since is not None:
            where.append("time >= ?")
            params.append(to_us(flt.since))
        if flt.until is not None:
            where.append("time < ?")
            params.append(to_us(flt.until))
        return await keyset_page(self._db, "activity", ACTIVITY_LIST, where, params, page, entry_from)
