"""The store port: what core needs from the database, grouped by aggregate.

Two adapters implement it (server/store/sqlite, server/store/mongo) and one contract suite
(tests/contract) holds them to the same behaviour. Every method is async. Errors are the
domain's own (server.core.errors), never a driver's:

- NotFound: the id does not exist.
- AlreadyExists(field=...): a unique key is taken ("email", "username", "deviceId", or an
  "at most one active" rule: "activeJob", "activeRollout").
- Conflict: a compare-and-set lost (the current status was not one of `expected`).
- InvalidArgument: a malformed page token or page size.
- Unavailable: the database is down, unreachable or timed out; safe to retry.

Lists are keyset-paginated: `Page.next_page_token` is opaque and empty on the last page. A
token is only meaningful for the same list with the same filter.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from server.core.errors import InvalidArgument
from server.core.model import (
    ActivityEntry,
    Device,
    Heartbeat,
    LedState,
    OtaJob,
    OtaJobStatus,
    Role,
    Rollout,
    RolloutStatus,
    User,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Bulk reads by id (latest_for_devices) take at most this many ids per call.
MAX_IDS_PER_CALL = MAX_PAGE_SIZE

T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """size 0 means the default; sizes above MAX_PAGE_SIZE are capped, not refused."""

    size: int = DEFAULT_PAGE_SIZE
    token: str = ""

    @property
    def limit(self) -> int:
        if self.size < 0:
            raise InvalidArgument("page size must not be negative")
        if self.size == 0:
            return DEFAULT_PAGE_SIZE
        return min(self.size, MAX_PAGE_SIZE)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""


@dataclass(frozen=True)
class UserFilter:
    blocked: bool | None = None
    role: Role | None = None
    email_prefix: str = ""


@dataclass(frozen=True)
class DeviceFilter:
    owner_id: str | None = None
    online: bool | None = None
    firmware_version: str | None = None
    blocked: bool | None = None
    platform: str | None = None


@dataclass(frozen=True)
class OtaJobFilter:
    device_id: str | None = None
    status: OtaJobStatus | None = None
    rollout_id: str | None = None
    owner_id: str | None = None


@dataclass(frozen=True)
class RolloutFilter:
    status: RolloutStatus | None = None
    platform: str | None = None


@dataclass(frozen=True)
class ActivityFilter:
    actor: str | None = None
    target: str | None = None
    action: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True)
class DeviceSummary:
    devices: int
    online: int
    offline: int
    blocked: int
    by_firmware: dict[str, int] = field(default_factory=dict)  # "" = not reported yet
    by_platform: dict[str, int] = field(default_factory=dict)


class UserStore(Protocol):
    async def create(self, user: User) -> User:
        """AlreadyExists(field="email" | "username"). Core normalises email case first."""
        ...

    async def get(self, user_id: str) -> User: ...

    async def get_by_email(self, email: str) -> User: ...

    async def get_by_username(self, username: str) -> User: ...

    async def list(self, flt: UserFilter, page: PageRequest) -> Page[User]:
        """Oldest first (created_at, user_id)."""
        ...

    async def set_blocked(self, user_id: str, blocked: bool, at: datetime) -> User: ...

    async def set_role(self, user_id: str, role: Role, at: datetime) -> User: ...

    async def set_password_hash(self, user_id: str, password_hash: str, at: datetime) -> User: ...

    async def count_admins(self, active_only: bool = True) -> int:
        """Admins, excluding blocked ones when active_only."""
        ...


class DeviceStore(Protocol):
    async def create(self, device: Device) -> Device:
        """AlreadyExists(field="deviceId")."""
        ...

    async def get(self, device_id: str) -> Device: ...

    async def delete(self, device_id: str) -> None: ...

    async def list(self, flt: DeviceFilter, page: PageRequest) -> Page[Device]:
        """Oldest first (created_at, device_id)."""
        ...

    async def set_blocked(self, device_id: str, blocked: bool, at: datetime) -> Device: ...

    async def set_led(self, device_id: str, led: LedState, at: datetime) -> Device: ...

    async def set_name(self, device_id: str, name: str, at: datetime) -> Device: ...

    async def set_credentials(
        self, device_id: str, broker_username: str, credential_hash: str, at: datetime
    ) -> Device: ...

    async def apply_heartbeats(self, heartbeats: Sequence[Heartbeat]) -> int:
        """One batched write: per device, health, last_seen and (when reported) the firmware
        version, and online=True. At most one heartbeat per device is expected (the writer
        coalesces); a heartbeat older than the stored last_seen is ignored, and it does not
        bring a device back online that a later presence message took offline. Unknown ids
        are skipped. Returns how many devices were updated."""
        ...

    async def set_online(self, device_id: str, online: bool, at: datetime) -> bool:
        """Conditional: writes only when the flag differs and `at` is not older than the last
        presence change. Returns whether it changed. NotFound for an unknown id."""
        ...

    async def mark_stale_offline(self, cutoff: datetime, limit: int) -> builtins.list[str]:
        """Flip online devices whose last_seen < cutoff to offline, at most `limit`; returns
        the ids this call flipped. Safe to run on several replicas at once: each device is
        reported by exactly one caller."""
        ...

    async def summary(self, owner_id: str | None = None) -> DeviceSummary: ...


class OtaJobStore(Protocol):
    async def create(self, job: OtaJob) -> OtaJob:
        """A device has at most one active (STARTED/IN_PROGRESS) job: a second one raises
        AlreadyExists(field="activeJob"). A duplicate job id: AlreadyExists(field="jobId")."""
        ...

    async def get(self, job_id: str) -> OtaJob: ...

    async def list(self, flt: OtaJobFilter, page: PageRequest) -> Page[OtaJob]:
        """Newest first (created_at, job_id)."""
        ...

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
        """Atomic compare-and-set: Conflict unless the current status is in `expected`;
        NotFound for an unknown id. progress/error None keeps the stored value."""
        ...

    async def active_for_device(self, device_id: str) -> OtaJob | None: ...

    async def latest_for_devices(self, device_ids: Sequence[str]) -> dict[str, OtaJob]:
        """The newest job of each device that has one; at most MAX_IDS_PER_CALL ids."""
        ...

    async def stale_active(self, cutoff: datetime, limit: int) -> builtins.list[OtaJob]:
        """Active jobs not updated since before cutoff (for timeouts), oldest first."""
        ...

    async def counts_by_status(self, rollout_id: str) -> dict[OtaJobStatus, int]:
        """Every status present, with 0 for the absent ones."""
        ...


class RolloutStore(Protocol):
    async def create(self, rollout: Rollout) -> Rollout:
        """At most one active (RUNNING/PAUSED) rollout per platform: a second one raises
        AlreadyExists(field="activeRollout"). A duplicate id: AlreadyExists(field="rolloutId")."""
        ...

    async def get(self, rollout_id: str) -> Rollout: ...

    async def list(self, flt: RolloutFilter, page: PageRequest) -> Page[Rollout]:
        """Newest first (created_at, rollout_id)."""
        ...

    async def transition(
        self,
        rollout_id: str,
        expected: Collection[RolloutStatus],
        new_status: RolloutStatus,
        *,
        at: datetime,
    ) -> Rollout:
        """Atomic compare-and-set, like OtaJobStore.transition."""
        ...


class ActivityStore(Protocol):
    async def append(self, entry: ActivityEntry) -> None: ...

    async def list(self, flt: ActivityFilter, page: PageRequest) -> Page[ActivityEntry]:
        """Newest first (time, entry_id)."""
        ...


class Store(Protocol):
    @property
    def users(self) -> UserStore: ...

    @property
    def devices(self) -> DeviceStore: ...

    @property
    def ota_jobs(self) -> OtaJobStore: ...

    @property
    def rollouts(self) -> RolloutStore: ...

    @property
    def activity(self) -> ActivityStore: ...

    async def ping(self) -> None:
        """Returns when the database answers; Unavailable otherwise."""
        ...

    async def close(self) -> None: ...
