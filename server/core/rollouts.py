"""Staged rollouts: one release to every matching device of a platform, a batch at a time,
pausing itself when too many updates fail.

The API half (create, list, get, pause, resume, abort) only moves the rollout's status, each
move a compare-and-set in the store. The scheduler half (`advance_all`, run every second by
RolloutScheduler) does the work of every RUNNING rollout: it starts OTA jobs through
OtaJobs.start_update (the same checks as a single-device update, plus the rollout id), keeps at
most `batch_size` of them in flight, pauses on failures and completes the rollout. Nothing of
its progress is stored: the counters come from the rollout's jobs and the devices it targets
(rollout_rules), so every replica computes the same answer.

Several replicas may run the scheduler at once. The store keeps at most one active job per
device, so a device is never updated twice; each replica recounts the rollout's in-flight jobs
right before every start, so `batch_size` can be exceeded by at most (replicas - 1) jobs, for as
long as those racing jobs run. Pause and abort stop new starts from the next one on; a start
already under way on a replica still happens (at most one per replica).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from server.core.activity import SYSTEM, ActivityLog
from server.core.caller import Caller
from server.core.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from server.core.model import OTA_ACTIVE, ROLLOUT_ACTIVE, ROLLOUT_ALLOWED_FROM, Device, OtaJob, Role, Rollout
from server.core.model import RolloutStatus as S
from server.core.ota import OtaJobs
from server.core.paging import collect, find, items
from server.core.periodic import PeriodicTask
from server.core.releases import release_to_offer
from server.core.rollout_rules import (
    Counters,
    RolloutRequest,
    check_transition,
    count_jobs,
    counters,
    decide,
    failure_window,
    targets,
)
from server.ports.catalog import FirmwareCatalog
from server.ports.clock import Clock
from server.ports.store import (
    DeviceFilter,
    DeviceStore,
    OtaJobFilter,
    OtaJobStore,
    Page,
    PageRequest,
    RolloutFilter,
    RolloutStore,
)

log = logging.getLogger("server.rollouts")

TICK_SECONDS = 1.0
# The scheduler starts jobs as an admin would, and the activity log names it "system".
SCHEDULER = Caller(user_id=SYSTEM, role=Role.ADMIN, username="rollout scheduler")


@dataclass(frozen=True)
class RolloutView:
    rollout: Rollout
    counters: Counters


@dataclass(frozen=True)
class _Snapshot:
    jobs: list[OtaJob]
    unstarted: list[Device]  # targeted, no job in this rollout yet; oldest device first


class Rollouts:
    def __init__(
        self,
        store: RolloutStore,
        jobs: OtaJobStore,
        devices: DeviceStore,
        ota: OtaJobs,
        catalog: FirmwareCatalog,
        activity: ActivityLog,
        clock: Clock,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._devices = devices
        self._ota = ota
        self._catalog = catalog
        self._activity = activity
        self._clock = clock
        # Set when a rollout starts running, so the scheduler begins now rather than next tick.
        self.wake = asyncio.Event()

    # ---- the API -------------------------------------------------------------------------

    async def create(self, caller: Caller, request: RolloutRequest) -> RolloutView:
        _require_admin(caller)
        platform = request.platform
        # The same rule as a single-device update: no version means the latest good release.
        release = await release_to_offer(self._catalog, platform, request.version)
        now = self._clock.now()
        rollout = Rollout(
            rollout_id=uuid.uuid4().hex,
            platform=platform,
            version=release.version,
            status=S.RUNNING,
            created_by=caller.user_id,
            batch_size=request.batch_size,
            max_failure_ratio=request.max_failure_ratio,
            created_at=now,
            updated_at=now,
            from_version=request.from_version,
        )
        try:
            await self._store.create(rollout)
        except AlreadyExists as exc:
            if exc.field != "activeRollout":
                raise
            active = await self._active_for(platform)
            which = f" ({active.rollout_id}, {active.status.value}, to {active.version})" if active else ""
            raise AlreadyExists(
                f"platform {platform} already has an active rollout{which}; pause is not enough, abort it first",
                field="activeRollout",
            ) from None
        await self._activity.record(
            caller.actor,
            "rollout.create",
            rollout.rollout_id,
            platform=platform,
            version=rollout.version,
            batch_size=rollout.batch_size,
            max_failure_ratio=rollout.max_failure_ratio,
            from_version=rollout.from_version or None,
        )
        self.wake.set()
        return await self._view(rollout)

    async def list(self, caller: Caller, page: PageRequest) -> Page[RolloutView]:
        _require_admin(caller)
        rollouts = await self._store.list(RolloutFilter(), page)
        return Page([await self._view(r) for r in rollouts.items], rollouts.next_page_token)

    async def get(self, caller: Caller, rollout_id: str) -> RolloutView:
        _require_admin(caller)
        return await self._view(await self._get(rollout_id))

    async def pause(self, caller: Caller, rollout_id: str) -> RolloutView:
        return await self._view(await self._move(caller, rollout_id, S.PAUSED, "rollout.pause"))

    async def resume(self, caller: Caller, rollout_id: str) -> RolloutView:
        rollout = await self._move(caller, rollout_id, S.RUNNING, "rollout.resume")
        self.wake.set()
        return await self._view(rollout)

    async def abort(self, caller: Caller, rollout_id: str) -> RolloutView:
        return await self._view(await self._move(caller, rollout_id, S.ABORTED, "rollout.abort"))

    # ---- the scheduler's pass ----------------------------------------------------------------

    async def advance_all(self) -> None:
        """One pass over every RUNNING rollout (at most one per platform)."""
        async for rollout in self._all_rollouts(S.RUNNING):
            try:
                await self.advance(rollout)
            except DomainError as exc:  # the store or the catalog is down: next tick
                log.warning("rollout pass failed", extra={"rollout_id": rollout.rollout_id, "error": exc.message})

    async def advance(self, rollout: Rollout) -> None:
        snap = await self._snapshot(rollout)
        if await self._release_withdrawn(rollout):
            return
        counts = count_jobs(snap.jobs)
        decision = decide(
            rollout,
            in_flight=sum(counts[s] for s in OTA_ACTIVE),
            window=failure_window(snap.jobs, rollout.updated_at),
            unstarted=len(snap.unstarted),
            startable=sum(1 for d in snap.unstarted if d.online),
        )
        if decision.pause_ratio is not None:
            await self._system_move(
                rollout, S.PAUSED, "rollout.auto_pause", ratio=f"{decision.pause_ratio:.2f}",
                max_failure_ratio=rollout.max_failure_ratio,
            )  # fmt: skip
        elif decision.complete:
            c = counters(counts, 0)
            await self._system_move(rollout, S.COMPLETED, "rollout.complete", succeeded=c.succeeded, failed=c.failed)
        elif decision.start:
            await self._start_batch(rollout, [d for d in snap.unstarted if d.online])

    async def _start_batch(self, rollout: Rollout, candidates: builtins.list[Device]) -> None:
        for device in candidates:
            # Recounted before every start: another replica may be starting jobs too.
            in_flight = await self._jobs.counts_by_status(rollout.rollout_id)
            if sum(in_flight[s] for s in OTA_ACTIVE) >= rollout.batch_size:
                return
            if (await self._store.get(rollout.rollout_id)).status is not S.RUNNING:
                return  # paused or aborted meanwhile
            try:
                # The device as this pass's snapshot read it, moments ago: a device that went
                # offline or was blocked since is caught by the next pass (a job sent to it in
                # between is refused at the broker, or times out).
                await self._ota.start_update(SCHEDULER, device, rollout.version, rollout_id=rollout.rollout_id)
            except (FailedPrecondition, AlreadyExists, NotFound) as exc:
                # Already running the version, or has another active job (a manual update, or
                # another replica was first): it stays a candidate for later passes.
                log.info(
                    "rollout skipped a device",
                    extra={"rollout_id": rollout.rollout_id, "device_id": device.device_id, "error": exc.message},
                )
            except Unavailable as exc:
                # The broker or the store is down; a job that could not be sent already ended FAILED.
                log.warning("rollout paused its batch", extra={"rollout_id": rollout.rollout_id, "error": exc.message})
                return

    async def _release_withdrawn(self, rollout: Rollout) -> bool:
        """A version blocked (or removed) mid-rollout pauses it: no device should get it now."""
        try:
            release = await self._catalog.get_release(rollout.platform, rollout.version)
            reason = f"version blocked: {release.blocked_reason or 'no reason given'}" if release.blocked else ""
        except NotFound:
            reason = "version no longer in the catalog"
        if reason:
            await self._system_move(rollout, S.PAUSED, "rollout.auto_pause", reason=reason)
        return bool(reason)

    # ---- helpers -------------------------------------------------------------------------

    async def _get(self, rollout_id: str) -> Rollout:
        try:
            return await self._store.get(rollout_id)
        except NotFound:
            raise NotFound(f"rollout {rollout_id} not found") from None

    async def _move(self, caller: Caller, rollout_id: str, new: S, action: str) -> Rollout:
        _require_admin(caller)
        rollout = await self._get(rollout_id)
        check_transition(rollout, new)
        try:
            # `expected` is every state the move is legal from, so a Conflict means the race was
            # lost to a move that made this one illegal (e.g. the rollout completed meanwhile):
            # answered like any illegal move, with the state found after the race.
            updated = await self._store.transition(rollout_id, ROLLOUT_ALLOWED_FROM[new], new, at=self._clock.now())
        except Conflict:
            check_transition(await self._get(rollout_id), new)
            # The state flapped back to one the move is legal from: a plain Conflict (ABORTED,
            # "retry") is the honest answer.
            raise
        await self._activity.record(
            caller.actor, action, rollout_id, status=updated.status.value, previous=rollout.status.value
        )
        return updated

    async def _system_move(self, rollout: Rollout, new: S, action: str, **details: object) -> None:
        try:
            await self._store.transition(rollout.rollout_id, {rollout.status}, new, at=self._clock.now())
        except Conflict:
            return  # an admin or another replica moved it first; their move stands
        await self._activity.record_quietly(SYSTEM, action, rollout.rollout_id, version=rollout.version, **details)
        log.info("rollout moved", extra={"rollout_id": rollout.rollout_id, "status": new.value, "action": action})

    async def _active_for(self, platform: str) -> Rollout | None:
        of_platform = partial(self._store.list, RolloutFilter(platform=platform))
        return await find(of_platform, lambda r: r.status in ROLLOUT_ACTIVE)

    def _all_rollouts(self, status: S) -> AsyncIterator[Rollout]:
        return items(partial(self._store.list, RolloutFilter(status=status)))

    async def _snapshot(self, rollout: Rollout) -> _Snapshot:
        """The rollout's jobs and the targeted devices without one. Read whole on every pass
        (two indexed scans): fine for fleets of thousands, the scale this store serves."""
        jobs = await collect(partial(self._jobs.list, OtaJobFilter(rollout_id=rollout.rollout_id)))
        started = {j.device_id for j in jobs}
        of_platform = DeviceFilter(platform=rollout.platform, blocked=False)
        unstarted = [
            d
            async for d in items(partial(self._devices.list, of_platform))
            if d.device_id not in started and targets(rollout, d)
        ]
        return _Snapshot(jobs, unstarted)

    async def _view(self, rollout: Rollout) -> RolloutView:
        if rollout.status.terminal:
            # A finished rollout targets nobody new: its counters are its jobs alone.
            return RolloutView(rollout, counters(await self._jobs.counts_by_status(rollout.rollout_id), 0))
        snap = await self._snapshot(rollout)
        return RolloutView(rollout, counters(count_jobs(snap.jobs), len(snap.unstarted)))


def _require_admin(caller: Caller) -> None:
    # The access policy already limits these RPCs to admins; core does not rely on it alone.
    if not caller.is_admin:
        raise PermissionDenied("rollouts are for admins")


class RolloutScheduler(PeriodicTask):
    """Runs Rollouts.advance_all every TICK_SECONDS, sooner when woken (a rollout created or resumed)."""

    def __init__(self, rollouts: Rollouts, interval: float = TICK_SECONDS) -> None:
        super().__init__("rollout scheduler", rollouts.advance_all, interval, wake=rollouts.wake, logger=log)
