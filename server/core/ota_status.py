"""The status of each device's latest OTA job, as device lists and the dashboard show it.

Looked up for a whole page of devices at once: one `latest_for_devices` query per
MAX_IDS_PER_CALL devices (a page is at most MAX_PAGE_SIZE = MAX_IDS_PER_CALL, so one per
page), never one query per device. The devices come from a list the caller was already
allowed to read, so this adds no tenant check of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from server.core.model import Device, OtaJob, OtaJobStatus
from server.ports.store import MAX_IDS_PER_CALL


class LatestJobs(Protocol):
    """The one store method the lookup needs (OtaJobStore satisfies it)."""

    async def latest_for_devices(self, device_ids: Sequence[str]) -> dict[str, OtaJob]: ...


class LatestOtaStatus:
    def __init__(self, jobs: LatestJobs) -> None:
        self._jobs = jobs

    async def of(self, devices: Iterable[Device]) -> dict[str, OtaJobStatus]:
        """device id -> status of its newest job; devices that never had a job are absent."""
        ids = list(dict.fromkeys(d.device_id for d in devices))
        statuses: dict[str, OtaJobStatus] = {}
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            latest = await self._jobs.latest_for_devices(ids[start : start + MAX_IDS_PER_CALL])
            statuses.update((device_id, job.status) for device_id, job in latest.items())
        return statuses
