"""The shared test-data factory: valid users, devices, OTA jobs, rollouts and activity
entries with unique ids, every field overridable (hawkBit's TestdataFactory, in small)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from server.core.model import (
    ActivityEntry,
    Device,
    DeviceHealth,
    Heartbeat,
    LedState,
    OtaJob,
    OtaJobStatus,
    Role,
    Rollout,
    RolloutStatus,
    User,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


class Factory:
    """Each instance numbers its records from 1; `tick()` gives strictly increasing times so
    creation order is the sort order."""

    def __init__(self, start: datetime = T0) -> None:
        self._seq = itertools.count(1)
        self._start = start
        self._ticks = itertools.count(0)

    def seq(self) -> int:
        return next(self._seq)

    def tick(self) -> datetime:
        return self._start + timedelta(milliseconds=next(self._ticks), microseconds=7)

    def user(self, **kw: Any) -> User:
        n = self.seq()
        at = self.tick()
        base = User(
            user_id=f"u-{n}",
            username=f"user{n}",
            email=f"user{n}@example.com",
            password_hash=f"$argon2id$v=19$m=65536,t=3,p=4$salt{n}$hash{n}",
            role=Role.USER,
            blocked=False,
            created_at=at,
            updated_at=at,
        )
        return replace(base, **kw)

    def device(self, owner_id: str = "u-owner", **kw: Any) -> Device:
        n = self.seq()
        at = self.tick()
        base = Device(
            device_id=f"esp32-{n:06d}",
            owner_id=owner_id,
            name=f"Device {n}",
            platform="esp32s3",
            firmware_version="1.0.0",
            led=LedState.UNKNOWN,
            online=False,
            last_seen=None,
            health=None,
            blocked=False,
            broker_username=f"esp32-{n:06d}",
            credential_hash=f"pbkdf2-sha512$hash{n}",
            created_at=at,
            updated_at=at,
        )
        return replace(base, **kw)

    def health(self, **kw: Any) -> DeviceHealth:
        base = DeviceHealth(heap=20000, uptime=120, rssi=-61, extra={"temp": 41.5}, reported_at=self.tick())
        return replace(base, **kw)

    def heartbeat(self, device_id: str, **kw: Any) -> Heartbeat:
        base = Heartbeat(
            device_id=device_id,
            at=self.tick(),
            firmware_version="1.0.0",
            heap=18000,
            uptime=300,
            rssi=-55,
            extra={},
        )
        return replace(base, **kw)

    def ota_job(self, device: Device | None = None, **kw: Any) -> OtaJob:
        n = self.seq()
        at = self.tick()
        device_id = device.device_id if device else f"esp32-job-{n}"
        base = OtaJob(
            job_id=f"job-{n}",
            device_id=device_id,
            owner_id=device.owner_id if device else "u-owner",
            platform=device.platform if device else "esp32s3",
            from_version="1.0.0",
            to_version="1.1.0",
            status=OtaJobStatus.STARTED,
            progress=0,
            error="",
            rollout_id=None,
            created_at=at,
            updated_at=at,
        )
        return replace(base, **kw)

    def rollout(self, **kw: Any) -> Rollout:
        n = self.seq()
        at = self.tick()
        base = Rollout(
            rollout_id=f"ro-{n}",
            platform=f"esp32s3-{n}",
            version="1.1.0",
            status=RolloutStatus.RUNNING,
            created_by="u-admin",
            batch_size=10,
            max_failure_ratio=0.1,
            created_at=at,
            updated_at=at,
        )
        return replace(base, **kw)

    def activity(self, **kw: Any) -> ActivityEntry:
        n = self.seq()
        base = ActivityEntry(
            entry_id=f"act-{n}",
            time=self.tick(),
            actor="u-1",
            action="device.register",
            target=f"esp32-{n:06d}",
            details={"name": f"Device {n}"},
        )
        return replace(base, **kw)
