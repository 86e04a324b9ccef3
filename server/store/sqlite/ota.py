"""OTA jobs and rollouts on SQLite; status changes are compare-and-set in one UPDATE."""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from server.core.errors import Conflict, InvalidArgument, NotFound
from server.core.model import OtaJob, OtaJobStatus, Rollout, RolloutStatus
from server.ports.store import (
    MAX_IDS_PER_CALL,
    OtaJobFilter,
    Page,
    PageRequest,
    RolloutFilter,
)
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
from server.store.sqlite.common import Row, already_exists, equal_where, fetch_one, insert, keyset_page, read_one
from server.store.sqlite.db import Database, IntegrityViolation

_JOB_UNIQUE = {"ota_jobs_one_active": "activeJob", "ota_jobs.device_id": "activeJob",
               "ota_jobs.job_id": "jobId"}  # fmt: skip
_ROLLOUT_UNIQUE = {"rollouts_one_active": "activeRollout", "rollouts.platform": "activeRollout",
                   "rollouts.rollout_id": "rolloutId"}  # fmt: skip


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _cas(
    c: sqlite3.Connection,
    *,
    table: str,
    id_col: str,
    item_id: str,
    expected: Collection[str],
    assignments: str,
    params: Sequence[Any],
) -> Row:
    """UPDATE ... WHERE id = ? AND status IN (expected) RETURNING *, or Conflict/NotFound."""
    what = "OTA job" if table == "ota_jobs" else "rollout"
    if not expected:
        raise Conflict(f"{what} is not in an expected state")
    sql = (
        f"UPDATE {table} SET {assignments} "  # noqa: S608 - constant identifiers
        f"WHERE {id_col} = ? AND status IN ({_placeholders(len(expected))}) RETURNING *"
    )
    row = fetch_one(c, sql, (*params, item_id, *expected))
    if row is not None:
        return row
    current = fetch_one(c, f"SELECT status FROM {table} WHERE {id_col} = ?", (item_id,))  # noqa: S608
    if current is None:
        raise NotFound(f"{what} not found")
    raise status_conflict(what, current["status"], expected)


class SqliteOtaJobs:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, job: OtaJob) -> OtaJob:
        await insert(self._db, "ota_jobs", job_record(job), _JOB_UNIQUE, "an OTA job")
        return job

    async def get(self, job_id: str) -> OtaJob:
        return job_from(
            await read_one(self._db, "SELECT * FROM ota_jobs WHERE job_id = ?", (job_id,), "OTA job not found")
        )

    async def list(self, flt: OtaJobFilter, page: PageRequest) -> Page[OtaJob]:
        where, params = equal_where(job_matches(flt))
        return await keyset_page(self._db, "ota_jobs", JOB_LIST, where, params, page, job_from)

    async def transition(
        self,
        job_id: str,
        expected: Collection[OtaJobStatus],
        new_status: OtaJobStatus,
        *,
        at: datetime,
        progress: int | None = None,
        error: str | None = None,
    ) -> OtaJob:
        params = (new_status.value, progress, error, to_us(at))
        try:
            row = await self._db.write(
                lambda c: _cas(
                    c,
                    table="ota_jobs",
                    id_col="job_id",
                    item_id=job_id,
                    expected=[s.value for s in expected],
                    assignments="status = ?, progress = coalesce(?, progress), "
                    "error = coalesce(?, error), updated_at = ?",
                    params=params,
                )
            )
        except IntegrityViolation as exc:  # back to an active status beside another active job
            raise already_exists(exc, _JOB_UNIQUE, "an OTA job") from None
        return job_from(row)

    async def active_for_device(self, device_id: str) -> OtaJob | None:
        row = await self._db.read(
            lambda c: fetch_one(
                c,
                "SELECT * FROM ota_jobs WHERE device_id = ? "
                "AND status IN ('STARTED', 'IN_PROGRESS') "
                "ORDER BY created_at DESC, job_id DESC LIMIT 1",
                (device_id,),
            )
        )
        return None if row is None else job_from(row)

    async def latest_for_devices(self, device_ids: Sequence[str]) -> dict[str, OtaJob]:
        if len(device_ids) > MAX_IDS_PER_CALL:
            raise InvalidArgument(f"at most {MAX_IDS_PER_CALL} device ids per call")

        def run(c: sqlite3.Connection) -> dict[str, OtaJob]:
            found: dict[str, OtaJob] = {}
            for device_id in dict.fromkeys(device_ids):
                row = c.execute(
                    "SELECT * FROM ota_jobs WHERE device_id = ? ORDER BY created_at DESC, job_id DESC LIMIT 1",
                    (device_id,),
                ).fetchone()
                if row is not None:
                    found[device_id] = job_from(row)
            return found

        return await self._db.read(run)

    async def stale_active(self, cutoff: datetime, limit: int) -> builtins.list[OtaJob]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM ota_jobs WHERE status IN ('STARTED', 'IN_PROGRESS') "
                "AND updated_at < ? ORDER BY updated_at, job_id LIMIT ?",
                (to_us(cutoff), max(limit, 0)),
            ).fetchall()
        )
        return [job_from(r) for r in rows]

    async def counts_by_status(self, rollout_id: str) -> dict[OtaJobStatus, int]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT status, count(*) FROM ota_jobs WHERE rollout_id = ? GROUP BY status",
                (rollout_id,),
            ).fetchall()
        )
        counts = dict.fromkeys(OtaJobStatus, 0)
        for status, n in rows:
            counts[OtaJobStatus(status)] = n
        return counts


class SqliteRollouts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, rollout: Rollout) -> Rollout:
        await insert(self._db, "rollouts", rollout_record(rollout), _ROLLOUT_UNIQUE, "a rollout")
        return rollout

    async def get(self, rollout_id: str) -> Rollout:
        sql = "SELECT * FROM rollouts WHERE rollout_id = ?"
        return rollout_from(await read_one(self._db, sql, (rollout_id,), "rollout not found"))

    async def list(self, flt: RolloutFilter, page: PageRequest) -> Page[Rollout]:
        where, params = equal_where(rollout_matches(flt))
        return await keyset_page(self._db, "rollouts", ROLLOUT_LIST, where, params, page, rollout_from)

    async def transition(
        self,
        rollout_id: str,
        expected: Collection[RolloutStatus],
        new_status: RolloutStatus,
        *,
        at: datetime,
    ) -> Rollout:
        try:
            row = await self._db.write(
                lambda c: _cas(
                    c,
                    table="rollouts",
                    id_col="rollout_id",
                    item_id=rollout_id,
                    expected=[s.value for s in expected],
                    assignments="status = ?, updated_at = ?",
                    params=(new_status.value, to_us(at)),
                )
            )
        except IntegrityViolation as exc:
            raise already_exists(exc, _ROLLOUT_UNIQUE, "a rollout") from None
        return rollout_from(row)
