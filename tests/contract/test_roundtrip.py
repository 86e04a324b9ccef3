"""Hypothesis-generated records (unicode, long strings, edge times and numbers) come back
from the store exactly as they went in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from server.ports.store import ActivityFilter, PageRequest, Store

# The store fixture is per test, not per example: every example uses fresh unique ids.
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)).map(
    lambda d: d.replace(tzinfo=UTC)
) | st.sampled_from(
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
)
texts = st.text(max_size=30)
# one field per record may be long: enough to cross page and buffer boundaries, few enough
# to keep the generated data within Hypothesis's budget
long_texts = texts | st.text(min_size=1000, max_size=3000)
json_scalars: st.SearchStrategy[JsonScalar] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
extras = st.dictionaries(st.text(max_size=20), json_scalars, max_size=6)


def unique(prefix: str) -> st.SearchStrategy[str]:
    return st.text(max_size=30).map(lambda s: f"{prefix}{uuid.uuid4().hex}{s}")


@SETTINGS
@given(
    user_id=unique("u"),
    username=unique("n"),
    email=unique("e"),
    password_hash=long_texts,
    role=st.sampled_from(Role),
    blocked=st.booleans(),
    created=times,
    updated=times,
)
async def test_user_round_trips(
    store: Store,
    user_id: str,
    username: str,
    email: str,
    password_hash: str,
    role: Role,
    blocked: bool,
    created: datetime,
    updated: datetime,
) -> None:
    user = User(user_id, username, email, password_hash, role, blocked, created, updated)
    await store.users.create(user)
    assert await store.users.get(user_id) == user
    assert await store.users.get_by_email(email) == user
    assert await store.users.get_by_username(username) == user


healths = st.builds(
    DeviceHealth,
    heap=st.none() | INT64,
    uptime=st.none() | INT64,
    rssi=st.none() | INT64,
    extra=extras,
    reported_at=times,
)


@SETTINGS
@given(
    device=st.builds(
        Device,
        device_id=unique("d"),
        owner_id=texts,
        name=long_texts,
        platform=texts,
        firmware_version=texts,
        led=st.sampled_from(LedState),
        online=st.booleans(),
        last_seen=st.none() | times,
        health=st.none() | healths,
        blocked=st.booleans(),
        broker_username=texts,
        credential_hash=texts,
        created_at=times,
        updated_at=times,
    )
)
async def test_device_round_trips(store: Store, device: Device) -> None:
    await store.devices.create(device)
    assert await store.devices.get(device.device_id) == device


@SETTINGS
@given(
    device_id=unique("d"),
    at=times,
    firmware=long_texts,
    heap=st.none() | INT64,
    uptime=st.none() | INT64,
    rssi=st.none() | INT64,
    extra=extras,
)
async def test_heartbeat_round_trips(
    store: Store,
    device_id: str,
    at: datetime,
    firmware: str,
    heap: int | None,
    uptime: int | None,
    rssi: int | None,
    extra: dict[str, JsonScalar],
) -> None:
    t0 = datetime(1, 1, 1, tzinfo=UTC)
    device = Device(device_id, "o", "n", "esp32s3", "", LedState.OFF, False, None, None, False, "b", "h", t0, t0)
    await store.devices.create(device)
    hb = Heartbeat(device_id, at, firmware, heap, uptime, rssi, extra)
    assert await store.devices.apply_heartbeats([hb]) == 1
    got = await store.devices.get(device_id)
    assert got.health == DeviceHealth(heap, uptime, rssi, extra, at)
    assert (got.last_seen, got.firmware_version, got.online) == (at, firmware, True)


@SETTINGS
@given(
    job=st.builds(
        OtaJob,
        job_id=unique("j"),
        device_id=unique("d"),
        owner_id=texts,
        platform=texts,
        from_version=texts,
        to_version=texts,
        status=st.sampled_from(OtaJobStatus),
        progress=INT64,
        error=long_texts,
        rollout_id=st.none() | texts,
        created_at=times,
        updated_at=times,
    ),
    rollout=st.builds(
        Rollout,
        rollout_id=unique("r"),
        platform=unique("p"),
        version=texts,
        status=st.sampled_from(RolloutStatus),
        created_by=texts,
        batch_size=INT64,
        max_failure_ratio=st.floats(allow_nan=False),
        created_at=times,
        updated_at=times,
        from_version=texts,
    ),
)
async def test_job_and_rollout_round_trip(store: Store, job: OtaJob, rollout: Rollout) -> None:
    await store.ota_jobs.create(job)
    assert await store.ota_jobs.get(job.job_id) == job
    await store.rollouts.create(rollout)
    assert await store.rollouts.get(rollout.rollout_id) == rollout


@SETTINGS
@given(
    entry=st.builds(
        ActivityEntry,
        entry_id=unique("a"),
        time=times,
        actor=unique("actor"),
        action=long_texts,
        target=texts,
        details=st.dictionaries(st.text(max_size=20), texts, max_size=5),
    )
)
async def test_activity_round_trips(store: Store, entry: ActivityEntry) -> None:
    await store.activity.append(entry)
    page = await store.activity.list(ActivityFilter(actor=entry.actor), PageRequest())
    assert page.items == [entry]
