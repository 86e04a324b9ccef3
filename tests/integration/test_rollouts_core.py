"""core.rollouts against the real embedded store: the state moves, including one that loses a
race to the scheduler, and the admin-only rule core keeps on its own."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from server.core.activity import ActivityLog
from server.core.caller import Caller
from server.core.errors import FailedPrecondition, PermissionDenied
from server.core.model import Role, Rollout, RolloutStatus
from server.core.ota import OtaJobs
from server.core.rollouts import Rollouts
from server.ports.catalog import FirmwareCatalog
from server.ports.clock import ManualClock
from server.ports.store import ActivityFilter, PageRequest, Store
from tests.support.factory import Factory

ADMIN = Caller("u-admin", Role.ADMIN)


def rollouts(store: Store) -> Rollouts:
    clock = ManualClock(datetime(2025, 1, 1, tzinfo=UTC))
    # The state moves need neither OTA nor the catalog: only the scheduler pass does.
    return Rollouts(
        store.rollouts,
        store.ota_jobs,
        store.devices,
        cast(OtaJobs, None),
        cast(FirmwareCatalog, None),
        ActivityLog(store.activity, clock),
        clock,
    )


async def test_moves_and_their_activity(store: Store) -> None:
    core = rollouts(store)
    r = await store.rollouts.create(Factory().rollout())
    assert (await core.pause(ADMIN, r.rollout_id)).rollout.status is RolloutStatus.PAUSED
    assert (await core.resume(ADMIN, r.rollout_id)).rollout.status is RolloutStatus.RUNNING
    view = await core.abort(ADMIN, r.rollout_id)
    assert view.rollout.status is RolloutStatus.ABORTED and view.counters.pending == 0
    with pytest.raises(FailedPrecondition, match="is ABORTED; only a RUNNING rollout can be paused"):
        await core.pause(ADMIN, r.rollout_id)
    entries = (await store.activity.list(ActivityFilter(target=r.rollout_id), PageRequest())).items
    # One manual-clock instant: the order among them is the ids', so compare as sets.
    assert {e.action for e in entries} == {"rollout.abort", "rollout.resume", "rollout.pause"}
    abort = next(e for e in entries if e.action == "rollout.abort")
    assert abort.actor == "u-admin" and abort.details == {"status": "ABORTED", "previous": "RUNNING"}


async def test_a_move_that_loses_a_race_names_the_state_after_it(store: Store) -> None:
    core = rollouts(store)
    r = await store.rollouts.create(Factory().rollout())
    real = store.rollouts.transition

    async def scheduler_first(
        rollout_id: str, expected: Collection[RolloutStatus], new: RolloutStatus, *, at: datetime
    ) -> Rollout:
        # The scheduler completes the rollout between the admin's read and write.
        await real(rollout_id, {RolloutStatus.RUNNING}, RolloutStatus.COMPLETED, at=at)
        return await real(rollout_id, expected, new, at=at)

    cast(Any, store.rollouts).transition = scheduler_first
    with pytest.raises(FailedPrecondition, match="is COMPLETED; only a RUNNING rollout can be paused") as caught:
        await core.pause(ADMIN, r.rollout_id)
    assert type(caught.value) is FailedPrecondition  # not a bare Conflict: the answer is final


async def test_core_refuses_non_admins(store: Store) -> None:
    core = rollouts(store)
    r = await store.rollouts.create(Factory().rollout())
    user = Caller("u1", Role.USER)
    for call in (core.get(user, r.rollout_id), core.pause(user, r.rollout_id), core.list(user, PageRequest())):
        with pytest.raises(PermissionDenied):
            await call
