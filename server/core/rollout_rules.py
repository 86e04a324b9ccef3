"""The staged-rollout policy as pure functions of plain values: no store, no clock, no I/O.

    create ──▶ RUNNING ──pause / auto-pause──▶ PAUSED ──resume──▶ RUNNING
                  │  └── nothing in flight, nobody left ──▶ COMPLETED
                  └────────────── abort (also from PAUSED) ──▶ ABORTED

Which moves are legal is the model's table (ROLLOUT_ALLOWED_FROM), which the store also
enforces as a compare-and-set; here it is turned into messages that name the current state.
A rollout's progress is never stored (ARCHITECTURE example 5, mender's Deployment.GetStatus):
the counters are derived from its OTA jobs plus the devices it still targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from server.core.device_rules import validate_platform
from server.core.errors import FailedPrecondition, InvalidArgument
from server.core.model import ROLLOUT_ALLOWED_FROM, Device, OtaJob, OtaJobStatus, Rollout, RolloutStatus
from server.core.releases import require_version, same_version

DEFAULT_BATCH_SIZE = 10
MAX_BATCH_SIZE = 1000
DEFAULT_MAX_FAILURE_RATIO = 0.2
# The failure ratio is judged only once this many jobs (at most a batch) have ended, so one
# unlucky device at the start of a rollout does not pause it.
MIN_FINISHED_FOR_RATIO = 3

VERBS = {
    RolloutStatus.PAUSED: "paused",
    RolloutStatus.RUNNING: "resumed",
    RolloutStatus.ABORTED: "aborted",
    RolloutStatus.COMPLETED: "completed",
}


@dataclass(frozen=True)
class RolloutRequest:
    """What CreateRollout asks for, validated and with the defaults filled in. `version` ""
    means the platform's production version, which core looks up in the catalog."""

    platform: str
    version: str
    batch_size: int
    max_failure_ratio: float
    from_version: str


def validate_request(
    platform: str, version: str, batch_size: int, max_failure_ratio: float, from_version: str
) -> RolloutRequest:
    """Every violation named in one InvalidArgument; 0 means "the default" for the numbers."""
    problems: list[str] = []
    try:
        platform = validate_platform(platform)
    except InvalidArgument as exc:
        problems.append(exc.message)
    version, from_version = version.strip(), from_version.strip()
    for name, value in (("version", version), ("fromVersion", from_version)):
        if value:
            try:
                require_version(name, value)
            except InvalidArgument as exc:
                problems.append(exc.message)
    batch = batch_size or DEFAULT_BATCH_SIZE
    if not 1 <= batch <= MAX_BATCH_SIZE:
        problems.append(f"batchSize must be between 1 and {MAX_BATCH_SIZE}")
    ratio = max_failure_ratio or DEFAULT_MAX_FAILURE_RATIO
    if not (math.isfinite(ratio) and 0 < ratio <= 1):
        problems.append("maxFailureRatio must be greater than 0 and at most 1")
    if version and from_version and same_version(version, from_version):
        problems.append("fromVersion must differ from version")
    if problems:
        raise InvalidArgument("; ".join(problems))
    return RolloutRequest(platform, version, batch, ratio, from_version)


def check_transition(rollout: Rollout, new: RolloutStatus) -> None:
    """FailedPrecondition naming the current state unless `new` may follow it."""
    allowed = ROLLOUT_ALLOWED_FROM[new]
    if rollout.status not in allowed:
        needed = " or ".join(sorted(s.value for s in allowed)) or "nothing"
        raise FailedPrecondition(
            f"rollout {rollout.rollout_id} is {rollout.status.value}; only a {needed} rollout can be {VERBS[new]}"
        )


def targets(rollout: Rollout, device: Device) -> bool:
    """Whether the rollout wants to update this device. Evaluated on every pass, so devices
    that start matching (registered, unblocked, downgraded) join a running rollout, and
    devices that stop matching (blocked, updated by hand) leave it before their job starts."""
    if device.blocked or device.platform != rollout.platform:
        return False
    if same_version(device.firmware_version, rollout.version):
        return False
    return not rollout.from_version or same_version(device.firmware_version, rollout.from_version)


@dataclass(frozen=True)
class Counters:
    targeted: int = 0
    pending: int = 0  # targeted, no job in this rollout yet (offline devices are waited for)
    in_progress: int = 0
    succeeded: int = 0
    failed: int = 0


def counters(job_counts: Mapping[OtaJobStatus, int], pending: int) -> Counters:
    """The rollout's jobs by status plus the devices it still targets without a job."""
    in_progress = job_counts.get(OtaJobStatus.STARTED, 0) + job_counts.get(OtaJobStatus.IN_PROGRESS, 0)
    succeeded = job_counts.get(OtaJobStatus.SUCCESS, 0)
    failed = job_counts.get(OtaJobStatus.FAILED, 0)
    return Counters(pending + in_progress + succeeded + failed, pending, in_progress, succeeded, failed)


def count_jobs(jobs: Iterable[OtaJob]) -> dict[OtaJobStatus, int]:
    counts = dict.fromkeys(OtaJobStatus, 0)
    for job in jobs:
        counts[job.status] += 1
    return counts


def failure_window(jobs: Iterable[OtaJob], since: datetime) -> tuple[int, int]:
    """(succeeded, failed) among the jobs that ended at or after `since`: the rollout's last
    change to RUNNING (its creation, or the last resume). Resuming is the admin saying "the
    failures so far are understood", so each resume starts a fresh window; otherwise a rollout
    paused for failures would pause again the moment it is resumed."""
    succeeded = failed = 0
    for job in jobs:
        if job.updated_at < since:
            continue
        if job.status is OtaJobStatus.SUCCESS:
            succeeded += 1
        elif job.status is OtaJobStatus.FAILED:
            failed += 1
    return succeeded, failed


def min_finished(batch_size: int) -> int:
    return max(1, min(batch_size, MIN_FINISHED_FOR_RATIO))


def failure_ratio_exceeded(succeeded: int, failed: int, batch_size: int, max_failure_ratio: float) -> float | None:
    """The ratio when it exceeds the limit (with enough finished jobs to judge), else None."""
    finished = succeeded + failed
    if finished < min_finished(batch_size):
        return None
    ratio = failed / finished
    return ratio if ratio > max_failure_ratio else None


@dataclass(frozen=True)
class Decision:
    """What one scheduler pass does to a RUNNING rollout: at most one of these is set."""

    pause_ratio: float | None = None
    complete: bool = False
    start: int = 0


def decide(rollout: Rollout, *, in_flight: int, window: tuple[int, int], unstarted: int, startable: int) -> Decision:
    """`unstarted`: targeted devices with no job in this rollout, online or not; `startable`:
    those of them that can get a job now (online, no other active job).

    Completion waits for offline devices: a rollout is COMPLETED only when nothing is in
    flight and every targeted device has had its job. One waiting only for devices that never
    come back stays RUNNING (its counters show them as pending) until an admin aborts it:
    finishing without them would report a fleet as updated when it is not.
    """
    ratio = failure_ratio_exceeded(*window, rollout.batch_size, rollout.max_failure_ratio)
    if ratio is not None:
        return Decision(pause_ratio=ratio)
    if in_flight == 0 and unstarted == 0:
        return Decision(complete=True)
    slots = max(0, rollout.batch_size - in_flight)
    return Decision(start=min(slots, startable))
