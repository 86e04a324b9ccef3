"""Entities to protobuf messages and request fields to core values: the only place that knows both."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from iot.v1 import common_pb2
from server.core.errors import InvalidArgument
from server.core.model import (
    ActivityEntry,
    Device,
    DeviceHealth,
    LedState,
    OtaJob,
    OtaJobStatus,
    Role,
    RolloutStatus,
    User,
)
from server.core.presence_view import ShownDevice
from server.core.registry import IssuedCredentials
from server.core.rollouts import RolloutView
from server.ports.catalog import Release
from server.ports.store import PageRequest

ROLE_TO_PB = {Role.USER: common_pb2.USER, Role.ADMIN: common_pb2.ADMIN}
ROLE_FROM_PB = {pb: role for role, pb in ROLE_TO_PB.items()}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def page_request(size: int, token: str) -> PageRequest:
    if size < 0:
        raise InvalidArgument("pageSize must not be negative")
    return PageRequest(size=size, token=token)


def role_from_pb(value: int) -> Role | None:
    if value == common_pb2.ROLE_UNSPECIFIED:
        return None
    try:
        return ROLE_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(f"unknown role {value}") from None


def user(u: User) -> common_pb2.User:
    # Built field by field: the password hash has no field to land in, by design.
    return common_pb2.User(
        user_id=u.user_id,
        username=u.username,
        email=u.email,
        role=ROLE_TO_PB[u.role],
        blocked=u.blocked,
        created_at=timestamp(u.created_at),
    )


def activity(e: ActivityEntry) -> common_pb2.ActivityEntry:
    return common_pb2.ActivityEntry(
        entry_id=e.entry_id, time=timestamp(e.time), actor=e.actor, action=e.action, target=e.target, details=e.details
    )


LED_TO_PB = {
    LedState.ON: common_pb2.ON,
    LedState.OFF: common_pb2.OFF,
    LedState.UNKNOWN: common_pb2.LED_STATE_UNSPECIFIED,
}
OTA_TO_PB = {
    OtaJobStatus.STARTED: common_pb2.STARTED,
    OtaJobStatus.IN_PROGRESS: common_pb2.IN_PROGRESS,
    OtaJobStatus.SUCCESS: common_pb2.SUCCESS,
    OtaJobStatus.FAILED: common_pb2.FAILED,
}


def led_from_pb(value: int) -> LedState:
    if value == common_pb2.ON:
        return LedState.ON
    if value == common_pb2.OFF:
        return LedState.OFF
    raise InvalidArgument('state must be "ON" or "OFF"')


def device_health(h: DeviceHealth) -> common_pb2.DeviceHealth:
    return common_pb2.DeviceHealth(
        heap=h.heap,
        uptime=h.uptime,
        rssi=h.rssi,
        reported_at=timestamp(h.reported_at),
        # JSON scalars as text; booleans the JSON way ("true"), not Python's ("True").
        extra={
            k: ("true" if v else "false") if isinstance(v, bool) else str(v)
            for k, v in h.extra.items()
            if v is not None
        },
    )


def device(d: Device, ota_status: OtaJobStatus | None = None, *, presence_known: bool = True) -> common_pb2.Device:
    # Field by field: the credential hash has no field to land in, by design.
    return common_pb2.Device(
        device_id=d.device_id,
        name=d.name,
        owner_id=d.owner_id,
        platform=d.platform,
        firmware_version=d.firmware_version,
        led=LED_TO_PB[d.led],
        online=d.online,
        last_seen=timestamp(d.last_seen),
        health=device_health(d.health) if d.health is not None else None,
        blocked=d.blocked,
        created_at=timestamp(d.created_at),
        ota_status=OTA_TO_PB[ota_status] if ota_status is not None else common_pb2.OTA_JOB_STATUS_UNSPECIFIED,
        presence_known=presence_known,
    )


def shown_device(s: ShownDevice, ota_status: OtaJobStatus | None = None) -> common_pb2.Device:
    return device(s.device, ota_status, presence_known=s.presence_known)


def mqtt_credentials(c: IssuedCredentials) -> common_pb2.MqttCredentials:
    return common_pb2.MqttCredentials(
        username=c.username, password=c.password, host=c.host, port=c.port, url=c.url, client_id=c.client_id
    )


def ota_job(j: OtaJob) -> common_pb2.OtaJob:
    return common_pb2.OtaJob(
        job_id=j.job_id,
        device_id=j.device_id,
        from_version=j.from_version,
        to_version=j.to_version,
        status=OTA_TO_PB[j.status],
        progress=j.progress,
        error=j.error,
        rollout_id=j.rollout_id or "",
        created_at=timestamp(j.created_at),
        updated_at=timestamp(j.updated_at),
        platform=j.platform,
    )


def release(r: Release) -> common_pb2.Release:
    return common_pb2.Release(
        platform=r.platform,
        version=r.version,
        size=r.size,
        sha256=r.sha256,
        secure_version=r.secure_version,
        project_name=r.project_name,
        idf_version=r.idf_version,
        build_time=timestamp(r.build_time),
        production=r.production,
        blocked=r.blocked,
        blocked_reason=r.blocked_reason,
        signature=r.signature,
    )


ROLLOUT_TO_PB = {
    RolloutStatus.RUNNING: common_pb2.RUNNING,
    RolloutStatus.PAUSED: common_pb2.PAUSED,
    RolloutStatus.COMPLETED: common_pb2.COMPLETED,
    RolloutStatus.ABORTED: common_pb2.ABORTED,
}


def rollout(v: RolloutView) -> common_pb2.Rollout:
    r, c = v.rollout, v.counters
    return common_pb2.Rollout(
        rollout_id=r.rollout_id,
        platform=r.platform,
        version=r.version,
        status=ROLLOUT_TO_PB[r.status],
        created_by=r.created_by,
        batch_size=r.batch_size,
        max_failure_ratio=r.max_failure_ratio,
        counters=common_pb2.RolloutCounters(
            targeted=c.targeted, pending=c.pending, in_progress=c.in_progress, succeeded=c.succeeded, failed=c.failed
        ),
        created_at=timestamp(r.created_at),
        updated_at=timestamp(r.updated_at),
        from_version=r.from_version,
    )
