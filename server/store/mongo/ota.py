"""OTA jobs and rollouts on MongoDB; status changes are find_one_and_update compare-and-sets.

"At most one active job per device" (and "one active rollout per platform") is a unique
sparse index over a field that exists only while the record is active: `activeDevice` /
`activePlatform`, set on create and by the transition pipeline, removed when it ends. This
works on every MongoDB version (a partial index over `status: {$in: ...}` needs 6.0).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection as Coll
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from server.core.errors import Conflict, InvalidArgument, NotFound
from server.core.model import (
    OTA_ACTIVE,
    ROLLOUT_ACTIVE,
    OtaJob,
    OtaJobStatus,
    Rollout,
    RolloutStatus,
)
from server.ports.store import MAX_IDS_PER_CALL, OtaJobFilter, Page, PageRequest, RolloutFilter
from server.store.codec import (
    JOB_LIST,
    ROLLOUT_LIST,
    job_from,
    job_matches,
    job_record,
    rollout_from,
    rollout_matches,
    rollout_record,
    status_conflict,
    to_us,
)
from server.store.mongo.common import Collection, Doc, Names, find_one, keyset_page, translated

JOB_UNIQUE = {"one_active_job": "activeJob", "activeDevice": "activeJob", "_id": "jobId"}
ROLLOUT_UNIQUE = {
    "one_active_rollout": "activeRollout",
    "activePlatform": "activeRollout",
    "_id": "rolloutId",
}
_ACTIVE_JOB = [s.value for s in OTA_ACTIVE]


JOB_NAMES = Names("job_id", owner_id="owner")
ROLLOUT_NAMES = Names("rollout_id")


def _job_doc(j: OtaJob) -> Doc:
    d = JOB_NAMES.doc(job_record(j))
    if j.status in OTA_ACTIVE:
        d["activeDevice"] = j.device_id
    return d


def _job(d: Doc) -> OtaJob:
    return job_from(JOB_NAMES.of(d))


def _rollout_doc(r: Rollout) -> Doc:
    d = ROLLOUT_NAMES.doc(rollout_record(r))
    if r.status in ROLLOUT_ACTIVE:
        d["activePlatform"] = r.platform
    return d


def _rollout(d: Doc) -> Rollout:
    d.setdefault("fromVersion", "")  # absent in documents written before the field
    return rollout_from(ROLLOUT_NAMES.of(d))


async def _cas(
    coll: Collection,
    *,
    what: str,
    unique: dict[str, str],
    item_id: str,
    expected: list[str],
    fields: dict[str, Any],
) -> Doc:
    """One find_one_and_update filtered on status; on a miss, tell NotFound from Conflict."""
    if not expected:
        raise Conflict(f"{what} is not in an expected state")
    literal = {k: _lit(v) for k, v in fields.items()}
    with translated(what, unique):
        d = await coll.find_one_and_update(
            {"_id": item_id, "status": {"$in": expected}},
            [{"$set": literal}],
            return_document=ReturnDocument.AFTER,
        )
        if d is not None:
            return d
        current = await coll.find_one({"_id": item_id}, {"status": 1})
    if current is None:
        raise NotFound(f"{what} not found")
    raise status_conflict(what, current["status"], expected)


def _lit(value: Any) -> Any:
    if isinstance(value, _FieldRef):
        return value.path
    return {"$literal": value}


class _FieldRef:
    """A pipeline field path ("$deviceId") or variable ("$$REMOVE"), passed through as is."""

    def __init__(self, path: str) -> None:
        self.path = path


class MongoOtaJobs:
    def __init__(self, coll: Collection) -> None:
        self._c = coll

    async def create(self, job: OtaJob) -> OtaJob:
        with translated("an OTA job", JOB_UNIQUE):
            await self._c.insert_one(_job_doc(job))
        return job

    async def get(self, job_id: str) -> OtaJob:
        return _job(await find_one(self._c, {"_id": job_id}, "OTA job not found"))

    async def list(self, flt: OtaJobFilter, page: PageRequest) -> Page[OtaJob]:
        query = JOB_NAMES.doc(job_matches(flt))
        return await keyset_page(self._c, JOB_NAMES, JOB_LIST, query, page, _job)

    async def transition(
        self,
        job_id: str,
        expected: Coll[OtaJobStatus],
        new_status: OtaJobStatus,
        *,
        at: datetime,
        progress: int | None = None,
        error: str | None = None,
    ) -> OtaJob:
        fields: dict[str, Any] = {
            "status": new_status.value,
            "updatedAt": to_us(at),
            "progress": _FieldRef("$progress") if progress is None else progress,
            "error": _FieldRef("$error") if error is None else error,
            "activeDevice": _FieldRef("$deviceId" if new_status in OTA_ACTIVE else "$$REMOVE"),
        }
        d = await _cas(
            self._c,
            what="OTA job",
            unique=JOB_UNIQUE,
            item_id=job_id,
            expected=[s.value for s in expected],
            fields=fields,
        )
        return _job(d)

    async def active_for_device(self, device_id: str) -> OtaJob | None:
        with translated():
            d = await self._c.find_one(
                {"deviceId": device_id, "status": {"$in": _ACTIVE_JOB}},
                sort=[("createdAt", -1), ("_id", -1)],
            )
        return None if d is None else _job(d)

    async def latest_for_devices(self, device_ids: Sequence[str]) -> dict[str, OtaJob]:
        if len(device_ids) > MAX_IDS_PER_CALL:
            raise InvalidArgument(f"at most {MAX_IDS_PER_CALL} device ids per call")
        if not device_ids:
            return {}
        pipeline: list[Doc] = [
            {"$match": {"deviceId": {"$in": list(dict.fromkeys(device_ids))}}},
            {"$sort": {"deviceId": 1, "createdAt": -1, "_id": -1}},
            {"$group": {"_id": "$deviceId", "doc": {"$first": "$$ROOT"}}},
        ]
        with translated():
            rows = await (await self._c.aggregate(pipeline)).to_list()
        return {r["_id"]: _job(r["doc"]) for r in rows}

    async def stale_active(self, cutoff: datetime, limit: int) -> builtins.list[OtaJob]:
        if limit <= 0:
            return []
        with translated():
            docs = (
                await self._c.find({"status": {"$in": _ACTIVE_JOB}, "updatedAt": {"$lt": to_us(cutoff)}})
                .sort([("updatedAt", 1), ("_id", 1)])
                .limit(limit)
                .to_list()
            )
        return [_job(d) for d in docs]

    async def counts_by_status(self, rollout_id: str) -> dict[OtaJobStatus, int]:
        pipeline: list[Doc] = [
            {"$match": {"rolloutId": rollout_id}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        with translated():
            rows = await (await self._c.aggregate(pipeline)).to_list()
        counts = dict.fromkeys(OtaJobStatus, 0)
        for r in rows:
            counts[OtaJobStatus(r["_id"])] = r["n"]
        return counts


class MongoRollouts:
    def __init__(self, coll: Collection) -> None:
        self._c = coll

    async def create(self, rollout: Rollout) -> Rollout:
        with translated("a rollout", ROLLOUT_UNIQUE):
            await self._c.insert_one(_rollout_doc(rollout))
        return rollout

    async def get(self, rollout_id: str) -> Rollout:
        return _rollout(await find_one(self._c, {"_id": rollout_id}, "rollout not found"))

    async def list(self, flt: RolloutFilter, page: PageRequest) -> Page[Rollout]:
        query = ROLLOUT_NAMES.doc(rollout_matches(flt))
        return await keyset_page(self._c, ROLLOUT_NAMES, ROLLOUT_LIST, query, page, _rollout)

    async def transition(
        self,
        rollout_id: str,
        expected: Coll[RolloutStatus],
        new_status: RolloutStatus,
        *,
        at: datetime,
    ) -> Rollout:
        active = new_status in ROLLOUT_ACTIVE
        d = await _cas(
            self._c,
            what="rollout",
            unique=ROLLOUT_UNIQUE,
            item_id=rollout_id,
            expected=[s.value for s in expected],
            fields={
                "status": new_status.value,
                "updatedAt": to_us(at),
                "activePlatform": _FieldRef("$platform" if active else "$$REMOVE"),
            },
        )
        return _rollout(d)
