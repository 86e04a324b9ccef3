"""LatestOtaStatus over the real SQLite store: the newest job's status per device, looked up
with one store query per page of devices (never one per device)."""

from __future__ import annotations

from collections.abc import Sequence

from server.core.model import OtaJob, OtaJobStatus
from server.core.ota_status import LatestJobs, LatestOtaStatus
from server.ports.store import MAX_IDS_PER_CALL, MAX_PAGE_SIZE, DeviceFilter, PageRequest, Store
from tests.support.factory import Factory


class CountingJobs:
    """The real job store, counting the bulk reads the lookup makes (a spy, not a stand-in)."""

    def __init__(self, jobs: LatestJobs) -> None:
        self._jobs = jobs
        self.calls: list[int] = []

    async def latest_for_devices(self, device_ids: Sequence[str]) -> dict[str, OtaJob]:
        self.calls.append(len(device_ids))
        return await self._jobs.latest_for_devices(device_ids)


async def test_the_newest_job_counts_and_a_page_costs_one_query(store: Store) -> None:
    f = Factory()
    devices = [await store.devices.create(f.device()) for _ in range(3)]
    await store.ota_jobs.create(f.ota_job(devices[0], status=OtaJobStatus.FAILED))
    await store.ota_jobs.create(f.ota_job(devices[0], status=OtaJobStatus.SUCCESS))
    await store.ota_jobs.create(f.ota_job(devices[1]))
    jobs = CountingJobs(store.ota_jobs)
    lookup = LatestOtaStatus(jobs)

    page = await store.devices.list(DeviceFilter(), PageRequest())
    assert await lookup.of(page.items) == {
        devices[0].device_id: OtaJobStatus.SUCCESS,
        devices[1].device_id: OtaJobStatus.STARTED,
    }
    assert jobs.calls == [3]
    assert await lookup.of([]) == {} and jobs.calls == [3]  # an empty page asks nothing


async def test_a_full_page_is_one_query_and_more_ids_are_split(store: Store) -> None:
    f = Factory()
    devices = [await store.devices.create(f.device()) for _ in range(MAX_PAGE_SIZE + 1)]
    await store.ota_jobs.create(f.ota_job(devices[-1], status=OtaJobStatus.IN_PROGRESS))
    jobs = CountingJobs(store.ota_jobs)
    lookup = LatestOtaStatus(jobs)

    page = await store.devices.list(DeviceFilter(), PageRequest(MAX_PAGE_SIZE))
    assert await lookup.of(page.items) == {}
    assert jobs.calls == [MAX_PAGE_SIZE]
    jobs.calls.clear()
    assert await lookup.of(devices) == {devices[-1].device_id: OtaJobStatus.IN_PROGRESS}
    assert jobs.calls == [MAX_IDS_PER_CALL, 1]
