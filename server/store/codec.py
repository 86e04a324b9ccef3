"""What both adapters share: exact times, JSON blobs, opaque page tokens, and each entity as a
neutral record.

Times are stored as integer epoch microseconds on both adapters: exact (BSON dates keep only
milliseconds), totally ordered, and cheap to index and compare in a conditional update.

A record is one stored entity as a flat dict of storable values (times as microseconds, enums as
their value, free-form maps as JSON text) under neutral names, which are the SQLite column
names. The SQLite adapter writes a record as a row and reads a model back from a row; the
MongoDB adapter renames the fields into a document and back (mongo/common.Names). So what is
stored for each model field, and how it is read back, is written once for both backends.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Protocol, TypeVar

from server.core.errors import AlreadyExists, Conflict, InvalidArgument
from server.core.model import (
    ActivityEntry,
    Device,
    DeviceHealth,
    Heartbeat,
    JsonScalar,
    LedState,
    OtaJob,
    OtaJobStatus,
    Role,
    Rollout,
    RolloutStatus,
    User,
)
from server.ports.store import ActivityFilter, DeviceFilter, OtaJobFilter, Page, RolloutFilter, UserFilter

R = TypeVar("R")
T = TypeVar("T")
Record = dict[str, Any]


class Fields(Protocol):
    """What a model is read back from: a sqlite3.Row, or a MongoDB document seen by neutral names."""

    def __getitem__(self, key: str, /) -> Any: ...


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    if dt.utcoffset() is None:
        # A naive time is a bug in the caller; storing it would silently shift it.
        raise InvalidArgument("times must be timezone-aware")
    return (dt - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def opt_to_us(dt: datetime | None) -> int | None:
    return None if dt is None else to_us(dt)


def opt_from_us(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def dump_json(value: Any) -> str:
    # Device-supplied keys may hold '.' or '$' (which MongoDB field names treat specially),
    # so free-form maps are stored as one JSON string on both adapters.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def load_extra(text: str) -> dict[str, JsonScalar]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def load_details(text: str) -> dict[str, str]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def encode_token(kind: str, sort_key: int, item_id: str) -> str:
    raw = dump_json([kind, sort_key, item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str) -> tuple[int, str]:
    """The keyset position (sort key, id) after which the next page starts."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument("malformed page token") from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or value[0] != kind
        or type(value[1]) is not int
        or not isinstance(value[2], str)
    ):
        raise InvalidArgument("malformed page token")
    return value[1], value[2]


@dataclass(frozen=True)
class ListOrder:
    """How one list is ordered and paged, the same on both adapters: by (sort, id) under neutral
    names, ascending or not; kind tags its page tokens, so a token from one list is refused by
    another."""

    kind: str
    sort: str
    id: str
    descending: bool


USER_LIST = ListOrder("users", "created_at", "user_id", descending=False)
DEVICE_LIST = ListOrder("devices", "created_at", "device_id", descending=False)
JOB_LIST = ListOrder("ota_jobs", "created_at", "job_id", descending=True)  # newest first
ROLLOUT_LIST = ListOrder("rollouts", "created_at", "rollout_id", descending=True)
ACTIVITY_LIST = ListOrder("activity", "time", "entry_id", descending=True)


def cut_page(
    kind: str,
    rows: Sequence[R],
    limit: int,
    position: Callable[[R], tuple[int, str]],
    to_item: Callable[[R], T],
) -> Page[T]:
    """The page from up to limit + 1 rows in keyset order: one row beyond the limit means there
    is a next page, which starts after the last row kept (its sort key and id)."""
    token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        token = encode_token(kind, *position(rows[-1]))
    return Page([to_item(r) for r in rows], token)


def already_exists(what: str, unique: Mapping[str, str], named: Callable[[str], bool]) -> AlreadyExists:
    """unique maps what the database names in a duplicate-key error (an index, a column) to the
    field reported; named(marker) tells whether this error names it."""
    for marker, field in unique.items():
        if named(marker):
            return AlreadyExists(f"{what} with this {field} already exists", field=field)
    return AlreadyExists(f"{what} already exists")


def status_conflict(what: str, current: str, expected: Collection[str]) -> Conflict:
    return Conflict(f"{what} is {current}, not {' or '.join(sorted(expected))}")


def equal_fields(pairs: Mapping[str, Any]) -> Record:
    """The equality conditions of a filter: the fields it sets (None means "any"), enums as values."""
    return {k: _value(v) for k, v in pairs.items() if v is not None}


def _value(v: Any) -> Any:
    return v.value if isinstance(v, Enum) else v


# Users


def user_record(u: User) -> Record:
    return {
        "user_id": u.user_id,
        "username": u.username,
        "email": u.email,
        "password_hash": u.password_hash,
        "role": u.role.value,
        "blocked": u.blocked,
        "created_at": to_us(u.created_at),
        "updated_at": to_us(u.updated_at),
    }


def user_from(f: Fields) -> User:
    return User(
        user_id=f["user_id"],
        username=f["username"],
        email=f["email"],
        password_hash=f["password_hash"],
        role=Role(f["role"]),
        blocked=bool(f["blocked"]),
        created_at=from_us(f["created_at"]),
        updated_at=from_us(f["updated_at"]),
    )


def user_matches(flt: UserFilter) -> Record:
    """The equality part of the filter; the email prefix is each adapter's."""
    return equal_fields({"blocked": flt.blocked, "role": flt.role})


# Devices


def health_record(h: DeviceHealth) -> Record:
    """A device's last health report; each adapter stores it (and its extra map) its own way."""
    return {
        "heap": h.heap,
        "uptime": h.uptime,
        "rssi": h.rssi,
        "extra": h.extra,
        "reportedAt": to_us(h.reported_at),
    }


def health_from(f: Fields, extra: dict[str, JsonScalar]) -> DeviceHealth:
    return DeviceHealth(
        heap=f["heap"], uptime=f["uptime"], rssi=f["rssi"], extra=extra, reported_at=from_us(f["reportedAt"])
    )


def heartbeat_health(hb: Heartbeat) -> DeviceHealth:
    """The health a heartbeat leaves on its device."""
    return DeviceHealth(hb.heap, hb.uptime, hb.rssi, hb.extra, hb.at)


def device_record(d: Device, health: Any) -> Record:
    """health: the device's health as the adapter stores it (see health_record)."""
    return {
        "device_id": d.device_id,
        "owner_id": d.owner_id,
        "name": d.name,
        "platform": d.platform,
        "firmware_version": d.firmware_version,
        "led": d.led.value,
        "online": d.online,
        "last_seen": opt_to_us(d.last_seen),
        # When presence last changed (set_online); not part of the model, so none yet.
        "presence_at": None,
        "health": health,
        "blocked": d.blocked,
        "broker_username": d.broker_username,
        "credential_hash": d.credential_hash,
        "created_at": to_us(d.created_at),
        "updated_at": to_us(d.updated_at),
    }


def device_from(f: Fields, health: DeviceHealth | None) -> Device:
    return Device(
        device_id=f["device_id"],
        owner_id=f["owner_id"],
        name=f["name"],
        platform=f["platform"],
        firmware_version=f["firmware_version"],
        led=LedState(f["led"]),
        online=bool(f["online"]),
        last_seen=opt_from_us(f["last_seen"]),
        health=health,
        blocked=bool(f["blocked"]),
        broker_username=f["broker_username"],
        credential_hash=f["credential_hash"],
        created_at=from_us(f["created_at"]),
        updated_at=from_us(f["updated_at"]),
    )


def device_matches(flt: DeviceFilter) -> Record:
    return equal_fields(
        {
            "owner_id": flt.owner_id,
            "firmware_version": flt.firmware_version,
            "platform": flt.platform,
            "online": flt.online,
            "blocked": flt.blocked,
        }
    )


# OTA jobs and rollouts


def job_record(j: OtaJob) -> Record:
    return {
        "job_id": j.job_id,
        "device_id": j.device_id,
        "owner_id": j.owner_id,
        "platform": j.platform,
        "from_version": j.from_version,
        "to_version": j.to_version,
        "status": j.status.value,
        "progress": j.progress,
        "error": j.error,
        "rollout_id": j.rollout_id,
        "created_at": to_us(j.created_at),
        "updated_at": to_us(j.updated_at),
    }


def job_from(f: Fields) -> OtaJob:
    return OtaJob(
        job_id=f["job_id"],
        device_id=f["device_id"],
        owner_id=f["owner_id"],
        platform=f["platform"],
        from_version=f["from_version"],
        to_version=f["to_version"],
        status=OtaJobStatus(f["status"]),
        progress=f["progress"],
        error=f["error"],
        rollout_id=f["rollout_id"],
        created_at=from_us(f["created_at"]),
        updated_at=from_us(f["updated_at"]),
    )


def job_matches(flt: OtaJobFilter) -> Record:
    return equal_fields(
        {
            "device_id": flt.device_id,
            "status": flt.status,
            "rollout_id": flt.rollout_id,
            "owner_id": flt.owner_id,
        }
    )


def rollout_record(r: Rollout) -> Record:
    return {
        "rollout_id": r.rollout_id,
        "platform": r.platform,
        "version": r.version,
        "status": r.status.value,
        "created_by": r.created_by,
        "batch_size": r.batch_size,
        "max_failure_ratio": r.max_failure_ratio,
        "created_at": to_us(r.created_at),
        "updated_at": to_us(r.updated_at),
        "from_version": r.from_version,
    }


def rollout_from(f: Fields) -> Rollout:
    return Rollout(
        rollout_id=f["rollout_id"],
        platform=f["platform"],
        version=f["version"],
        status=RolloutStatus(f["status"]),
        created_by=f["created_by"],
        batch_size=f["batch_size"],
        max_failure_ratio=f["max_failure_ratio"],
        created_at=from_us(f["created_at"]),
        updated_at=from_us(f["updated_at"]),
        from_version=f["from_version"],
    )


def rollout_matches(flt: RolloutFilter) -> Record:
    return equal_fields({"status": flt.status, "platform": flt.platform})


# The activity log


def entry_record(e: ActivityEntry) -> Record:
    return {
        "entry_id": e.entry_id,
        "time": to_us(e.time),
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "details": dump_json(e.details),
    }


def entry_from(f: Fields) -> ActivityEntry:
    return ActivityEntry(
        entry_id=f["entry_id"],
        time=from_us(f["time"]),
        actor=f["actor"],
        action=f["action"],
        target=f["target"],
        details=load_details(f["details"]),
    )


def entry_matches(flt: ActivityFilter) -> Record:
    """The equality part of the filter; the time window (since, until) is each adapter's."""
    return equal_fields({"actor": flt.actor, "target": flt.target, "action": flt.action})
