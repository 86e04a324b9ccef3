"""OTA jobs and rollouts: compare-and-set transitions, one active per device/platform."""

from __future__ import annotations

import asyncio

import pytest

from server.core.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from server.core.model import (
    OTA_ACTIVE,
    OTA_ALLOWED_FROM,
    ROLLOUT_ALLOWED_FROM,
    OtaJobStatus,
    RolloutStatus,
)
from server.ports.store import MAX_IDS_PER_CALL, OtaJobFilter, PageRequest, RolloutFilter, Store
from tests.support.factory import Factory

S = OtaJobStatus
R = RolloutStatus


async def test_create_get_and_one_active_job_per_device(store: Store, f: Factory) -> None:
    device = f.device()
    job = await store.ota_jobs.create(f.ota_job(device))
    assert await store.ota_jobs.get(job.job_id) == job
    with pytest.raises(AlreadyExists) as second:
        await store.ota_jobs.create(f.ota_job(device))
    assert second.value.field == "activeJob"
    with pytest.raises(AlreadyExists) as same_id:
        await store.ota_jobs.create(f.ota_job(job_id=job.job_id))
    assert same_id.value.field == "jobId"
    with pytest.raises(NotFound):
        await store.ota_jobs.get("nope")
    # once it ends, a new job may start
    await store.ota_jobs.transition(job.job_id, OTA_ACTIVE, S.FAILED, at=f.tick(), error="x")
    await store.ota_jobs.create(f.ota_job(device))


async def test_racing_job_starts_have_one_winner(store: Store, f: Factory) -> None:
    device = f.device()
    results = await asyncio.gather(
        *(store.ota_jobs.create(f.ota_job(device)) for _ in range(20)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, AlreadyExists) and r.field == "activeJob" for r in results if isinstance(r, BaseException))


async def test_transition_compare_and_set(store: Store, f: Factory) -> None:
    job = await store.ota_jobs.create(f.ota_job())
    at = f.tick()
    moving = await store.ota_jobs.transition(
        job.job_id, OTA_ALLOWED_FROM[S.IN_PROGRESS], S.IN_PROGRESS, at=at, progress=40
    )
    assert (moving.status, moving.progress, moving.error, moving.updated_at) == (
        S.IN_PROGRESS,
        40,
        "",
        at,
    )
    done = await store.ota_jobs.transition(job.job_id, OTA_ALLOWED_FROM[S.SUCCESS], S.SUCCESS, at=f.tick())
    assert done.status is S.SUCCESS and done.progress == 40  # None keeps the stored value
    assert await store.ota_jobs.get(job.job_id) == done
    with pytest.raises(Conflict):
        await store.ota_jobs.transition(job.job_id, OTA_ALLOWED_FROM[S.FAILED], S.FAILED, at=at)
    with pytest.raises(Conflict):
        await store.ota_jobs.transition(job.job_id, set(), S.FAILED, at=at)
    with pytest.raises(NotFound):
        await store.ota_jobs.transition("nope", OTA_ACTIVE, S.FAILED, at=at)
    assert await store.ota_jobs.get(job.job_id) == done


async def test_racing_transitions_have_one_winner(store: Store, f: Factory) -> None:
    job = await store.ota_jobs.create(f.ota_job())
    targets = [S.SUCCESS, S.FAILED] * 10
    results = await asyncio.gather(
        *(store.ota_jobs.transition(job.job_id, OTA_ACTIVE, t, at=f.tick(), error=t.value) for t in targets),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert await store.ota_jobs.get(job.job_id) == winners[0]
    assert winners[0].error == winners[0].status.value


async def test_active_latest_stale_and_counts(store: Store, f: Factory) -> None:
    d1, d2, d3 = f.device(), f.device(), f.device()
    old = await store.ota_jobs.create(f.ota_job(d1, rollout_id="ro-1"))
    await store.ota_jobs.transition(old.job_id, OTA_ACTIVE, S.SUCCESS, at=f.tick())
    new = await store.ota_jobs.create(f.ota_job(d1, rollout_id="ro-1"))
    other = await store.ota_jobs.create(f.ota_job(d2, rollout_id="ro-1"))
    cutoff = f.tick()
    await store.ota_jobs.transition(other.job_id, OTA_ACTIVE, S.IN_PROGRESS, at=f.tick())
    assert await store.ota_jobs.active_for_device(d1.device_id) == new
    assert await store.ota_jobs.active_for_device(d3.device_id) is None
    latest = await store.ota_jobs.latest_for_devices([d1.device_id, d2.device_id, d3.device_id])
    assert set(latest) == {d1.device_id, d2.device_id}
    assert latest[d1.device_id] == new
    assert latest[d2.device_id].status is S.IN_PROGRESS
    assert await store.ota_jobs.latest_for_devices([]) == {}
    with pytest.raises(InvalidArgument):
        await store.ota_jobs.latest_for_devices([f"d{i}" for i in range(MAX_IDS_PER_CALL + 1)])
    assert await store.ota_jobs.stale_active(cutoff, limit=10) == [new]
    assert await store.ota_jobs.stale_active(cutoff, limit=0) == []
    counts = await store.ota_jobs.counts_by_status("ro-1")
    assert counts == {S.STARTED: 1, S.IN_PROGRESS: 1, S.SUCCESS: 1, S.FAILED: 0}
    assert set((await store.ota_jobs.counts_by_status("ro-none")).values()) == {0}


async def test_job_list_filters_newest_first(store: Store, f: Factory) -> None:
    d1, d2 = f.device(owner_id="u-a"), f.device(owner_id="u-b")
    j1 = await store.ota_jobs.create(f.ota_job(d1))
    await store.ota_jobs.transition(j1.job_id, OTA_ACTIVE, S.FAILED, at=f.tick())
    j1 = await store.ota_jobs.get(j1.job_id)
    j2 = await store.ota_jobs.create(f.ota_job(d1, rollout_id="ro-9"))
    j3 = await store.ota_jobs.create(f.ota_job(d2))
    page = PageRequest(size=10)
    assert (await store.ota_jobs.list(OtaJobFilter(), page)).items == [j3, j2, j1]
    assert (await store.ota_jobs.list(OtaJobFilter(device_id=d1.device_id), page)).items == [
        j2,
        j1,
    ]
    assert (await store.ota_jobs.list(OtaJobFilter(status=S.FAILED), page)).items == [j1]
    assert (await store.ota_jobs.list(OtaJobFilter(rollout_id="ro-9"), page)).items == [j2]
    assert (await store.ota_jobs.list(OtaJobFilter(owner_id="u-b"), page)).items == [j3]
    walked = []
    token = ""
    while True:
        p = await store.ota_jobs.list(OtaJobFilter(), PageRequest(size=2, token=token))
        walked += p.items
        token = p.next_page_token
        if not token:
            break
    assert walked == [j3, j2, j1]


async def test_rollouts(store: Store, f: Factory) -> None:
    ro = await store.rollouts.create(f.rollout(platform="esp32s3"))
    assert await store.rollouts.get(ro.rollout_id) == ro
    with pytest.raises(AlreadyExists) as second:
        await store.rollouts.create(f.rollout(platform="esp32s3"))
    assert second.value.field == "activeRollout"
    other = await store.rollouts.create(f.rollout(platform="esp32c3"))
    paused = await store.rollouts.transition(ro.rollout_id, ROLLOUT_ALLOWED_FROM[R.PAUSED], R.PAUSED, at=f.tick())
    assert paused.status is R.PAUSED
    with pytest.raises(Conflict):
        await store.rollouts.transition(ro.rollout_id, ROLLOUT_ALLOWED_FROM[R.COMPLETED], R.COMPLETED, at=f.tick())
    aborted = await store.rollouts.transition(ro.rollout_id, ROLLOUT_ALLOWED_FROM[R.ABORTED], R.ABORTED, at=f.tick())
    assert aborted.status is R.ABORTED
    with pytest.raises(NotFound):
        await store.rollouts.transition("nope", {R.RUNNING}, R.PAUSED, at=f.tick())
    third = await store.rollouts.create(f.rollout(platform="esp32s3"))  # the slot is free again
    page = PageRequest(size=10)
    assert (await store.rollouts.list(RolloutFilter(), page)).items == [third, other, aborted]
    assert (await store.rollouts.list(RolloutFilter(platform="esp32s3"), page)).items == [
        third,
        aborted,
    ]
    assert (await store.rollouts.list(RolloutFilter(status=R.ABORTED), page)).items == [aborted]


async def test_racing_rollout_transitions(store: Store, f: Factory) -> None:
    ro = await store.rollouts.create(f.rollout())
    results = await asyncio.gather(
        *(
            store.rollouts.transition(ro.rollout_id, {R.RUNNING}, t, at=f.tick())
            for t in [R.PAUSED, R.ABORTED, R.COMPLETED] * 6
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
