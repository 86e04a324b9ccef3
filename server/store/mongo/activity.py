"""The activity log on MongoDB: append-only, read newest first."""

from __future__ import annotations

from server.core.model import ActivityEntry
from server.ports.store import ActivityFilter, Page, PageRequest
from server.store.codec import ACTIVITY_LIST, entry_from, entry_matches, entry_record, to_us
from server.store.mongo.common import Collection, Doc, Names, keyset_page, translated

UNIQUE = {"_id": "entryId", "_id_": "entryId"}
NAMES = Names("entry_id")


def _entry(d: Doc) -> ActivityEntry:
    return entry_from(NAMES.of(d))


class MongoActivity:
    def __init__(self, coll: Collection) -> None:
        self._c = coll

    async def append(self, entry: ActivityEntry) -> None:
        with translated("an activity entry", UNIQUE):
            await self._c.insert_one(NAMES.doc(entry_record(entry)))

    async def list(self, flt: ActivityFilter, page: PageRequest) -> Page[ActivityEntry]:
        query = NAMES.doc(entry_matches(flt))
        window: Doc = {}
        if flt.since is not None:
            window["$gte"] = to_us(flt.since)
        if flt.until is not None:
            window["$lt"] = to_us(flt.until)
        if window:
            query["time"] = window
        return await keyset_page(self._c, NAMES, ACTIVITY_LIST, query, page, _entry)
