"""Entities to protobuf messages and request fields to core values: the only place that knows both."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from iot.v1 import common_pb2
from server.core.errors import InvalidArgument
from server.core.model import ActivityEntry, Role, User
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
