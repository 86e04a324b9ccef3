"""The stored entities: plain frozen dataclasses and enums, no I/O.

Every time is a timezone-aware UTC `datetime` with microsecond precision; both store adapters
keep it exactly (they store integer epoch microseconds). Ids are strings chosen by core, never
by the store. The allowed-transition tables live here beside the statuses so that core (which
decides) and the stores (which compare-and-set) read the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# A value a device may put in its health report beyond the known fields. Nested JSON is
# flattened or dropped by the MQTT validator before it reaches here.
JsonScalar = str | int | float | bool | None


class Role(StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"


class LedState(StrEnum):
    ON = "ON"
    OFF = "OFF"
    UNKNOWN = "UNKNOWN"


class OtaJobStatus(StrEnum):
    STARTED = "STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in OTA_TERMINAL


OTA_ACTIVE: frozenset[OtaJobStatus] = frozenset({OtaJobStatus.STARTED, OtaJobStatus.IN_PROGRESS})
OTA_TERMINAL: frozenset[OtaJobStatus] = frozenset({OtaJobStatus.SUCCESS, OtaJobStatus.FAILED})
# new status -> the statuses it may be reached from. IN_PROGRESS -> IN_PROGRESS is a progress
# update. Pass OTA_ALLOWED_FROM[new] as `expected` to OtaJobStore.transition.
OTA_ALLOWED_FROM: dict[OtaJobStatus, frozenset[OtaJobStatus]] = {
    OtaJobStatus.STARTED: frozenset(),
    OtaJobStatus.IN_PROGRESS: OTA_ACTIVE,
    OtaJobStatus.SUCCESS: OTA_ACTIVE,
    OtaJobStatus.FAILED: OTA_ACTIVE,
}
# The same table read the other way: status -> where it may go next.
OTA_TRANSITIONS: dict[OtaJobStatus, frozenset[OtaJobStatus]] = {
    s: frozenset(n for n, froms in OTA_ALLOWED_FROM.items() if s in froms) for s in OtaJobStatus
}


class RolloutStatus(StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    ABORTED = "ABORTED"

    @property
    def terminal(self) -> bool:
        return self in ROLLOUT_TERMINAL


ROLLOUT_ACTIVE: frozenset[RolloutStatus] = frozenset({RolloutStatus.RUNNING, RolloutStatus.PAUSED})
ROLLOUT_TERMINAL: frozenset[RolloutStatus] = frozenset({RolloutStatus.COMPLETED, RolloutStatus.ABORTED})
ROLLOUT_ALLOWED_FROM: dict[RolloutStatus, frozenset[RolloutStatus]] = {
    RolloutStatus.RUNNING: frozenset({RolloutStatus.PAUSED}),  # resume
    RolloutStatus.PAUSED: frozenset({RolloutStatus.RUNNING}),
    RolloutStatus.COMPLETED: frozenset({RolloutStatus.RUNNING}),
    RolloutStatus.ABORTED: ROLLOUT_ACTIVE,
}
ROLLOUT_TRANSITIONS: dict[RolloutStatus, frozenset[RolloutStatus]] = {
    s: frozenset(n for n, froms in ROLLOUT_ALLOWED_FROM.items() if s in froms) for s in RolloutStatus
}


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    email: str
    password_hash: str
    role: Role
    blocked: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DeviceHealth:
    heap: int | None
    uptime: int | None
    rssi: int | None
    extra: dict[str, JsonScalar]
    reported_at: datetime


@dataclass(frozen=True)
class Device:
    device_id: str
    owner_id: str
    name: str
    platform: str  # hardware platform as in the firmware folders: esp32, esp32s3, esp32c3, ...
    firmware_version: str  # "" until the device first reports
    led: LedState
    online: bool
    last_seen: datetime | None
    health: DeviceHealth | None
    blocked: bool
    broker_username: str  # the MQTT username; the device's id unless provisioned otherwise
    credential_hash: str  # hash of the device's MQTT password (the password is shown once)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OtaJob:
    job_id: str
    device_id: str
    owner_id: str
    platform: str
    from_version: str
    to_version: str
    status: OtaJobStatus
    progress: int  # percent, 0..100
    error: str
    rollout_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Rollout:
    """A staged rollout of one version to one platform. Its progress is not stored: it is
    derived from the counters of its OTA jobs (OtaJobStore.counts_by_status)."""

    rollout_id: str
    platform: str
    version: str
    status: RolloutStatus
    created_by: str
    batch_size: int
    max_failure_ratio: float
    created_at: datetime
    updated_at: datetime
    # Only devices running this version are targeted; "" targets every version but the new one.
    from_version: str = ""


@dataclass(frozen=True)
class ActivityEntry:
    entry_id: str
    time: datetime
    actor: str  # user id, "device:<id>" or "system"
    action: str  # e.g. "device.register", "ota.start", "user.block"
    target: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Heartbeat:
    """One validated health report from a device (devices/{id}/health). The MQTT bridge
    stamps who sent it (the topic) and when it handed it to core; core queues it; the store
    applies it."""

    device_id: str
    at: datetime
    firmware_version: str | None = None  # None: the report did not say; keep the stored one
    heap: int | None = None
    uptime: int | None = None
    rssi: int | None = None
    extra: dict[str, JsonScalar] = field(default_factory=dict)

    def firmware_or(self, on_record: str) -> str:
        """The firmware the device runs: the reported one, else the one on record."""
        return on_record if self.firmware_version is None else self.firmware_version


@dataclass(frozen=True)
class OtaOffer:
    """What a device is told to install (devices/{id}/ota): the release and where to fetch it.
    The MQTT adapter encodes it (server/mqtt/payloads.py)."""

    job_id: str
    version: str
    url: str  # short-lived download URL of the release's firmware.bin
    size: int
    sha256: str
    signature: str  # base64 Ed25519 signature of the raw SHA-256, as in the release's metadata
