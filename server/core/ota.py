"""OTA jobs: check for an update, start one, and follow what the device reports until the job
ends SUCCESS (the new version seen in a heartbeat) or FAILED (device report, rollback, timeout).

Tenant isolation comes from DeviceRegistry.get: another user's device is NotFound, like a missing one.
Every move is a compare-and-set in the store (at most one active job per device is the store's
rule too), so two replicas handling the same device never overwrite each other; a move the
state machine or the store refuses is dropped, logged and counted (`on_rejected(reason)`),
never raised into the MQTT bridge. Every move writes the activity log (progress-only updates
excepted) and emits an OtaEvent for WatchOtaEvents.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from server.core.activity import SYSTEM, ActivityLog
from server.core.caller import Caller
from server.core.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    NotFound,
    Unavailable,
)
from server.core.fleet_events import EventHub, Subscription
from server.core.model import OTA_ACTIVE, Device, OtaJob, OtaJobStatus
from server.core.ota_rules import IllegalTransition, Step, step_for_health, step_for_report, update_available
from server.core.paging import pages
from server.core.periodic import PeriodicTask
from server.core.registry import DeviceRegistry
from server.core.releases import is_blocked, latest_good, release_to_offer, same_version
from server.ports.broker import DevicePublisher, HealthReport, OtaStatusReport
from server.ports.catalog import FirmwareCatalog
from server.ports.clock import Clock
from server.ports.store import OtaJobFilter, OtaJobStore, Page, PageRequest

log = logging.getLogger("server.ota")

SWEEP_BATCH = 100
NO_BROKER = "MQTT broker not configured"


@dataclass(frozen=True)
class OtaEvent:
    job: OtaJob  # the job as it is after the move
    time: datetime


class OtaEventHub(EventHub[OtaEvent]):
    pass


@dataclass(frozen=True)
class UpdateCheck:
    update_available: bool
    latest_version: str
    current_version: str
    current_blocked: bool


def sweep_interval(timeout: float) -> float:
    """Often enough that a job ends close to its deadline, rarely enough to cost nothing."""
    return min(max(timeout / 10, 0.1), 30.0)


class OtaJobs:
    def __init__(
        self,
        store: OtaJobStore,
        devices: DeviceRegistry,
        catalog: FirmwareCatalog,
        activity: ActivityLog,
        clock: Clock,
        events: OtaEventHub,
        *,
        publisher: DevicePublisher | None = None,
        url_ttl_seconds: int = 900,
        job_timeout_seconds: float = 1800.0,
        on_rejected: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._devices = devices
        self._catalog = catalog
        self._activity = activity
        self._clock = clock
        self._events = events
        self._publisher = publisher
        self._url_ttl = url_ttl_seconds
        self._timeout = job_timeout_seconds
        self._on_rejected = on_rejected
        self.rejected: dict[str, int] = {}
        # Devices with an active job, as far as this replica knows: a heartbeat from any other
        # device that reports its usual version costs no store read (heartbeats are the hot path).
        self._watched: set[str] = set()
        self._sweeper = PeriodicTask(
            "OTA timeout sweep",
            self.sweep_timeouts,
            sweep_interval(job_timeout_seconds),
            first_tick_at_start=False,
            logger=log,
        )

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the active jobs (so a rollback after a restart is noticed) and start the sweep."""
        for status in OTA_ACTIVE:
            async for page in pages(partial(self._store.list, OtaJobFilter(status=status))):
                self._watched.update(job.device_id for job in page.items)
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()

    # ---- the API -------------------------------------------------------------------------

    async def check(self, caller: Caller, device_id: str) -> UpdateCheck:
        device = await self._devices.get(caller, device_id)
        latest = await latest_good(self._catalog, device.platform)
        offered = latest.version if latest is not None else ""
        current = device.firmware_version
        current_blocked = await is_blocked(self._catalog, device.platform, current)
        return UpdateCheck(update_available(current, offered, current_blocked), offered, current, current_blocked)

    async def start_update_by_id(self, caller: Caller, device_id: str, version: str = "") -> OtaJob:
        """StartUpdate: one device, looked up as `caller` may see it."""
        return await self.start_update(caller, await self._devices.get(caller, device_id), version)

    async def start_update(
        self, caller: Caller, device: Device, version: str = "", *, rollout_id: str | None = None
    ) -> OtaJob:
        """The one way a job starts: from the API for one device, or from the rollout
        scheduler (with `rollout_id`), so both go through the same checks. `device` is as the
        caller just read it (its online and blocked state are judged from that read)."""
        if not caller.is_admin and device.owner_id != caller.user_id:
            raise NotFound(f"device {device.device_id} not found")  # like Devices.get: no hint it exists
        device_id = device.device_id
        if self._publisher is None:
            raise Unavailable(NO_BROKER)
        if device.blocked:
            raise FailedPrecondition("device is blocked")
        if not device.online:
            raise FailedPrecondition("device is offline")
        release = await release_to_offer(self._catalog, device.platform, version)
        if device.firmware_version and same_version(device.firmware_version, release.version):
            raise FailedPrecondition(f"device {device_id} is already running {release.version}")
        download = await self._catalog.download_url(device.platform, release.version, self._url_ttl)
        now = self._clock.now()
        job = OtaJob(
            job_id=uuid.uuid4().hex,
            device_id=device_id,
            owner_id=device.owner_id,
            platform=device.platform,
            from_version=device.firmware_version,
            to_version=release.version,
            status=OtaJobStatus.STARTED,
            progress=0,
            error="",
            rollout_id=rollout_id,
            created_at=now,
            updated_at=now,
        )
        try:
            job = await self._store.create(job)
        except AlreadyExists as exc:
            if exc.field != "activeJob":
                raise
            active = await self._store.active_for_device(device_id)
            which = f" ({active.job_id}, to {active.to_version})" if active is not None else ""
            raise AlreadyExists(f"device {device_id} already has an active OTA job{which}", field="activeJob") from None
        self._watched.add(device_id)
        payload = {
            "jobId": job.job_id,
            "version": release.version,
            "url": download.url,
            "size": release.size,
            "sha256": release.sha256,
            "signature": release.signature,
        }
        try:
            await self._publisher.publish_ota(device_id, payload)
        except Unavailable as exc:
            # The device never heard of it: end the job now rather than at the timeout.
            step = Step(OtaJobStatus.FAILED, error=f"not sent: {exc.message}", action="ota.failed")
            await self._apply(job, step, SYSTEM)
            raise
        await self._activity.record(
            caller.actor,
            "ota.start",
            device_id,
            job=job.job_id,
            to=release.version,
            rollout=rollout_id,
            **{"from": device.firmware_version},
        )
        self._emit(job)
        return job

    async def list(self, caller: Caller, device_id: str, page: PageRequest) -> Page[OtaJob]:
        await self._devices.get(caller, device_id)
        return await self._store.list(OtaJobFilter(device_id=device_id), page)

    async def get(self, caller: Caller, device_id: str, job_id: str) -> OtaJob:
        await self._devices.get(caller, device_id)
        try:
            job = await self._store.get(job_id)
        except NotFound:
            job = None
        if job is None or job.device_id != device_id:
            raise NotFound(f"OTA job {job_id} of device {device_id} not found")
        return job

    async def watch(self, caller: Caller, device_id: str = "", rollout_id: str = "") -> Subscription[OtaEvent]:
        if device_id:
            await self._devices.get(caller, device_id)

        def accept(event: OtaEvent) -> bool:
            job = event.job
            if device_id and job.device_id != device_id:
                return False
            if rollout_id and job.rollout_id != rollout_id:
                return False
            return caller.is_admin or job.owner_id == caller.user_id

        return self._events.subscribe(accept)

    # ---- what devices say (routed here by DeviceInbound, after its known/unblocked check) ----

    async def on_report(self, device: Device, report: OtaStatusReport) -> None:
        try:
            job = await self._store.get(report.job_id)
        except NotFound:
            self._reject("unknown_job", device.device_id, report.job_id, "no such job")
            return
        if job.device_id != device.device_id:
            self._reject("wrong_device", device.device_id, report.job_id, f"the job is {job.device_id}'s")
            return
        try:
            step = step_for_report(job, report.status, report.progress, report.error)
        except IllegalTransition as exc:
            self._reject("illegal_transition", device.device_id, job.job_id, str(exc))
            return
        if step.status is None:
            return
        self._watched.add(device.device_id)
        await self._apply(job, step, f"device:{device.device_id}")

    async def on_health(self, device: Device, report: HealthReport) -> None:
        """`device` is as it was before this heartbeat (its previous firmware version)."""
        device_id = device.device_id
        if device_id not in self._watched and report.firmware_version == device.firmware_version:
            return
        job = await self._store.active_for_device(device_id)
        if job is None:
            self._watched.discard(device_id)
            return
        self._watched.add(device_id)
        step = step_for_health(job, report.firmware_version, report.uptime, self._clock.now())
        if step is not None:
            await self._apply(job, step, f"device:{device_id}")

    # ---- timeouts ------------------------------------------------------------------------

    async def sweep_timeouts(self) -> int:
        """End active jobs without news for OTA_JOB_TIMEOUT_SECONDS; returns how many this call ended."""
        cutoff = self._clock.now() - timedelta(seconds=self._timeout)
        ended = 0
        for job in await self._store.stale_active(cutoff, SWEEP_BATCH):
            step = Step(OtaJobStatus.FAILED, error="timed out", action="ota.failed")
            if await self._apply(job, step, SYSTEM, quiet_conflict=True) is not None:
                ended += 1
        return ended

    # ---- helpers -------------------------------------------------------------------------

    async def _apply(self, job: OtaJob, step: Step, actor: str, *, quiet_conflict: bool = False) -> OtaJob | None:
        assert step.status is not None
        try:
            updated = await self._store.transition(
                job.job_id, step.expected, step.status, at=self._clock.now(), progress=step.progress, error=step.error
            )
        except Conflict as exc:
            # Another replica (or a racing report) moved it first: the store's answer stands.
            if not quiet_conflict:
                self._reject("illegal_transition", job.device_id, job.job_id, exc.message)
            return None
        if updated.status.terminal:
            self._watched.discard(job.device_id)
        if step.action is not None:
            await self._activity.record_quietly(
                actor,
                step.action,
                job.device_id,
                job=job.job_id,
                status=updated.status.value,
                to=job.to_version,
                error=updated.error or None,
            )
        self._emit(updated)
        return updated

    def _reject(self, reason: str, device_id: str, job_id: str, detail: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self._on_rejected is not None:
            self._on_rejected(reason)
        log.warning(
            "OTA report dropped", extra={"reason": reason, "device_id": device_id, "job_id": job_id, "detail": detail}
        )

    def _emit(self, job: OtaJob) -> None:
        self._events.publish(OtaEvent(job, self._clock.now()))
