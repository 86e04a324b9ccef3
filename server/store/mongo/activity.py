"""The activity log on MongoDB: append-only, read newest first."""

from __future__ import annotations

from server.core.model import ActivityEntry
from server.ports.store import ActivityFilter, Page, PageRequest
from server.store.codec import dump_json, from_us, load_details, to_us
from server.store.mongo.common import Collection, Doc, keyset_page, translated

UNIQUE = {"_id": "entryId", "_id_": "entryId"}


def _entry(d: Doc) -> ActivityEntry:
    return ActivityEntry(
        entry_id=d["_id"],
        time=from_us(d["time"]),
        actor=d["actor"],
        action=d["action"],
        target=d["target"],
        details=load_details(d["details"]),
    )


class MongoActivity:
    def __init__(self, coll: Collection) -> None:
        self._c = coll

    async def append(self, entry: ActivityEntry) -> None:
        doc = {
            "_id": entry.entry_id,
            "time": to_us(entry.time),
            "actor": entry.actor,
            "action": entry.action,
            "target": entry.target,
            "details": dump_json(entry.details),
        }
        with translated("an activity entry", UNIQUE):
            await self._c.insert_one(doc)

    async def list(self, flt: ActivityFilter, page: PageRequest) -> Page[ActivityEntry]:
        query: Doc = {}
        for field, value in (("actor", flt.actor), ("target", flt.target), ("action", flt.action)):
            if value is not None:
                query[field] = value
        window: Doc = {}
        if flt.since is not None:
            window["$gte"] = to_us(flt.since)
        if flt.until is not None:
            window["$lt"] = to_us(flt.until)
        if window:
            query["time"] = window
        return await keyset_page(
            self._c,
            kind="activity",
            query=query,
            sort_field="time",
            page=page,
            descending=True,
            to_item=_entry,
        )
