"""Whatever typed reports the bridge hands over, core and the real store take them without crashing."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.core.activity import ActivityLog
from server.core.caller import Caller
from server.core.device_changes import DeviceChanges
from server.core.errors import NotFound, PermissionDenied
from server.core.fleet_events import DeviceEventHub
from server.core.inbound import DeviceInbound
from server.core.model import Device, LedState, Role
from server.core.registry import DeviceRegistry
from server.ports.broker import HealthReport, StatusReport
from server.ports.clock import SystemClock
from tests.support.stores import sqlite_store

IDS = ["known", "blocked", "ghost"]
scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=64),
)
health = st.builds(
    HealthReport,
    firmware_version=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,31}", fullmatch=True),
    heap=st.integers(0, 2**32),
    uptime=st.integers(0, 2**40),
    rssi=st.none() | st.integers(-127, 0),
    extra=st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), scalars, max_size=8),
)
status = st.builds(
    StatusReport,
    led=st.none() | st.sampled_from(["ON", "OFF"]),
    command_id=st.none() | st.text(min_size=1, max_size=64),
)
event = st.tuples(st.sampled_from(IDS), st.one_of(health, status, st.booleans()))


async def run(events: list[tuple[str, Any]], data_dir: Path) -> None:
    async with sqlite_store(data_dir) as store:
        clock = SystemClock()
        activity = ActivityLog(store.activity, clock)
        changes = DeviceChanges(activity, clock, DeviceEventHub())
        registry = DeviceRegistry(store.devices, activity, clock, changes)
        devices = DeviceInbound(store.devices, clock, changes)
        now = clock.now()
        for device_id in ("known", "blocked"):
            await store.devices.create(
                Device(device_id, "u1", "n", "esp32s3", "", LedState.UNKNOWN, False, None, None,
                       device_id == "blocked", device_id, "h", now, now)
            )  # fmt: skip
        for device_id, report in events:
            try:
                if isinstance(report, HealthReport):
                    await devices.on_health(device_id, report)
                elif isinstance(report, StatusReport):
                    await devices.on_status(device_id, report)
                else:
                    await devices.on_presence(device_id, report)
            except NotFound:
                assert device_id == "ghost"
            except PermissionDenied:
                assert device_id == "blocked"
        known = await registry.get(Caller("u1", Role.USER), "known")
        last_health = [r for i, r in events if i == "known" and isinstance(r, HealthReport)]
        if last_health:
            assert known.firmware_version == last_health[-1].firmware_version
            assert known.health is not None and known.health.heap == last_health[-1].heap


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=12))
def test_any_sequence_of_reports_is_handled(events: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(events, Path(tmp)))
