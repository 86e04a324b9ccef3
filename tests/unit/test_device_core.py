"""Device core pieces without a broker: registration rollback, the event hub, command matching."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from server.core.activity import ActivityLog
from server.core.caller import Caller
from server.core.device_changes import DeviceChanges
from server.core.device_rules import credential_matches, hash_credential
from server.core.errors import NotFound, Unavailable
from server.core.fleet_events import DeviceEvent, DeviceEventHub, DeviceEventKind
from server.core.heartbeats import HeartbeatWriter
from server.core.inbound import DeviceInbound
from server.core.led import PendingCommands
from server.core.model import LedState, Role
from server.core.registry import BrokerAddress, DeviceRegistry
from server.ports.broker import DeviceCredentials, HealthReport, StatusReport
from server.ports.clock import ManualClock
from server.ports.store import Store
from tests.support.factory import Factory


class FlakyBroker:
    """A broker admin that fails on demand. A mock on purpose: the fault under test is the broker
    failing *between* the store write and provisioning, which a real broker can't be timed to do."""

    def __init__(self) -> None:
        self.down = True
        self.clients: dict[str, str] = {}

    async def create_device_client(self, device_id: str, password: str) -> DeviceCredentials:
        if self.down:
            raise Unavailable("MQTT broker unavailable")
        self.clients[device_id] = password
        return DeviceCredentials(device_id, password, "mqtt.example", 1883)

    async def set_device_enabled(self, device_id: str, enabled: bool) -> None: ...

    async def delete_device_client(self, device_id: str) -> None:
        self.clients.pop(device_id, None)

    async def set_device_password(self, device_id: str, password: str) -> None: ...


async def test_a_failed_provisioning_leaves_nothing_and_a_retry_works(store: Store) -> None:
    clock = ManualClock()
    broker = FlakyBroker()
    activity = ActivityLog(store.activity, clock)
    devices = DeviceRegistry(
        store.devices,
        activity,
        clock,
        DeviceChanges(activity, clock, DeviceEventHub()),
        broker=broker,
        address=BrokerAddress("mqtt.example", 1883, "mqtt://mqtt.example:1883"),
    )
    alice = Caller("alice", Role.USER)
    with pytest.raises(Unavailable):
        await devices.register(alice, "lamp", "Lamp")
    with pytest.raises(NotFound):
        await store.devices.get("lamp")
    broker.down = False
    reg = await devices.register(alice, "lamp", "Lamp")
    assert broker.clients["lamp"] == reg.credentials.password
    assert reg.credentials.url == "mqtt://mqtt.example:1883"
    assert credential_matches((await store.devices.get("lamp")).credential_hash, reg.credentials.password)


def test_credential_hash_is_salted_and_checks() -> None:
    a, b = hash_credential("pw"), hash_credential("pw")
    assert a != b and credential_matches(a, "pw") and not credential_matches(a, "pW")
    assert not credential_matches("garbage", "pw")


def event(n: int, owner: str = "u1") -> DeviceEvent:
    return DeviceEvent(DeviceEventKind.HEALTH, f"d{n}", owner, datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_slow_watcher_loses_its_oldest_events_and_others_are_filtered() -> None:
    drops: list[int] = []
    hub = DeviceEventHub(queue_size=3, on_drop=lambda: drops.append(1))
    mine = hub.subscribe(lambda e: e.owner_id == "u1")
    for n in range(5):
        hub.publish(event(n))
    hub.publish(event(99, owner="u2"))
    hub.close()
    got = [e.device_id async for e in mine]
    assert got == ["d2", "d3", "d4"] and len(drops) == 2
    assert hub.subscriber_count == 0


async def test_commands_match_by_id_or_by_state_after_publishing() -> None:
    pending = PendingCommands()
    by_id = pending.expect("d1", "c1", LedState.ON)
    by_state = pending.expect("d2", "c2", LedState.OFF)
    pending.resolve("d2", StatusReport(led="OFF"))  # before the publish: not an answer yet
    assert not by_state.done.is_set()
    by_state.published = by_id.published = True
    pending.resolve("d1", StatusReport(led="ON", command_id="other"))
    assert not by_id.done.is_set()
    pending.resolve("d1", StatusReport(led="ON", command_id="c1"))
    pending.resolve("d2", StatusReport(led="OFF"))
    await asyncio.wait_for(by_id.done.wait(), 1)
    assert by_state.done.is_set()
    pending.forget(by_id)
    pending.forget(by_state)
    assert len(pending) == 0


async def test_firmware_changes_are_written_through_and_steady_heartbeats_behind(store: Store) -> None:
    writer = HeartbeatWriter(store.devices, interval=3600)  # never flushes by itself here
    await writer.start()
    try:
        clock = ManualClock(datetime.now(UTC))
        changes = DeviceChanges(ActivityLog(store.activity, clock), clock, DeviceEventHub())
        devices = DeviceInbound(store.devices, clock, changes, heartbeats=writer)
        await store.devices.create(Factory().device(device_id="lamp", owner_id="alice", firmware_version=""))

        await devices.on_health("lamp", HealthReport("1.0.0", heap=100))
        assert (await store.devices.get("lamp")).firmware_version == "1.0.0"  # first report: at once

        clock.advance(1)
        await devices.on_health("lamp", HealthReport("1.0.0", heap=200))
        stored = await store.devices.get("lamp")
        assert stored.health is not None and stored.health.heap == 100  # same version: batched

        clock.advance(1)
        await devices.on_health("lamp", HealthReport("1.1.0", heap=300))
        assert (await store.devices.get("lamp")).firmware_version == "1.1.0"  # an update: at once
        await writer.stop()  # the older pending heartbeat must not roll the version back
        stored = await store.devices.get("lamp")
        assert stored.firmware_version == "1.1.0" and stored.health is not None and stored.health.heap == 300
    finally:
        await writer.stop()
