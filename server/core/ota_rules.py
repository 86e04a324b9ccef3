"""The OTA job state machine and version rules, as pure functions of plain values.

    STARTED ──report IN_PROGRESS──▶ IN_PROGRESS ──report SUCCESS──▶ IN_PROGRESS (progress 100)
       │                                │                                │
       └───────── report FAILED, timeout ┴──────────▶ FAILED ◀────────────┤ heartbeat with another
                                                                         │ version after a reboot
    any active job ──heartbeat with fw == to_version──▶ SUCCESS ◀────────┘

The model has no "waiting for confirmation" status, so that state is IN_PROGRESS with progress
100: a device's own IN_PROGRESS reports are capped at 99 to keep it unambiguous. A device saying
SUCCESS only means "installed, rebooting"; the job succeeds when a heartbeat shows the new
version running (SPEC section 6). Which statuses a move may start from is the model's table
(OTA_ALLOWED_FROM), which the store enforces atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.core.model import OTA_ALLOWED_FROM, OtaJob, OtaJobStatus
from server.core.releases import same_version, version_or_none
from server.ports.broker import OtaReportStatus

AWAITING_CONFIRMATION = 100
MAX_REPORTED_PROGRESS = AWAITING_CONFIRMATION - 1


@dataclass(frozen=True)
class Step:
    """A move of one job; `status` None means accepted without a change (e.g. a repeated report)."""

    status: OtaJobStatus | None
    progress: int | None = None
    error: str | None = None
    # The activity log action; None for progress-only updates (an event, but no audit entry).
    action: str | None = None

    @property
    def expected(self) -> frozenset[OtaJobStatus]:
        assert self.status is not None
        return OTA_ALLOWED_FROM[self.status]


NO_CHANGE = Step(None)


class IllegalTransition(Exception):
    """A report that the job's state does not allow; dropped and counted, never raised to callers."""


def awaiting_confirmation(job: OtaJob) -> bool:
    return job.status is OtaJobStatus.IN_PROGRESS and job.progress >= AWAITING_CONFIRMATION


def step_for_report(job: OtaJob, status: OtaReportStatus, progress: int | None, error: str | None) -> Step:
    """What a device's report on devices/{id}/ota/status does to its job."""
    if job.status.terminal:
        raise IllegalTransition(f"job is already {job.status.value}")
    match status:
        case OtaReportStatus.STARTED:
            if job.status is OtaJobStatus.STARTED:
                return NO_CHANGE  # the device acknowledges the job it was sent
            raise IllegalTransition(f"STARTED after {job.status.value}")
        case OtaReportStatus.IN_PROGRESS:
            if awaiting_confirmation(job):
                raise IllegalTransition("IN_PROGRESS after the device reported SUCCESS")
            value = min(job.progress if progress is None else progress, MAX_REPORTED_PROGRESS)
            action = "ota.progress" if job.status is OtaJobStatus.STARTED else None
            return Step(OtaJobStatus.IN_PROGRESS, progress=value, action=action)
        case OtaReportStatus.SUCCESS:
            if awaiting_confirmation(job):
                return NO_CHANGE  # QoS 1 may deliver it twice
            return Step(OtaJobStatus.IN_PROGRESS, progress=AWAITING_CONFIRMATION, action="ota.installed")
        case OtaReportStatus.FAILED:
            return Step(OtaJobStatus.FAILED, error=error or "the device reported a failure", action="ota.failed")
    raise IllegalTransition(f"unknown status {status}")  # pragma: no cover - the enum is exhaustive


def step_for_health(job: OtaJob, firmware: str, uptime: int | None, now: datetime) -> Step | None:
    """What a heartbeat from the job's device does to it: None when nothing.

    The new version running confirms the job whatever the device said before. Another version
    fails it, but only once the device reported SUCCESS *and* has rebooted since: a heartbeat
    whose uptime is shorter than the time since that report was sent after the reboot (one sent
    just before rebooting, still on the old version, must not fail the job). A device that
    sends no uptime is taken to have rebooted.
    """
    if same_version(firmware, job.to_version):
        return Step(OtaJobStatus.SUCCESS, progress=AWAITING_CONFIRMATION, action="ota.success")
    if not awaiting_confirmation(job):
        return None
    since_report = (now - job.updated_at).total_seconds()
    if uptime is not None and uptime >= since_report:
        return None
    return Step(OtaJobStatus.FAILED, error=f"device came back with version {firmware}", action="ota.failed")


def update_available(current: str, latest: str | None, current_blocked: bool) -> bool:
    """Whether `latest` should be offered to a device running `current` ("" if never reported)."""
    if not latest:
        return False
    if same_version(current, latest):
        return False
    if current_blocked:
        return True  # even an older version: the point of blocking is to move devices off it
    running, offered = version_or_none(current), version_or_none(latest)
    if running is None or offered is None:
        return True  # unknown or unparseable firmware: offer the known-good release
    return offered > running
