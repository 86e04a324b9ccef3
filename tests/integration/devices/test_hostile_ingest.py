"""Issue 10 item 1: no device message, and no failure of the listener, can stop ingest.

Each test runs its own plane and broker, because the attack leaves a retained message behind
and some tests restart or stop the plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from iot.v1 import device_pb2
from server import metrics
from server.app import ControlPlane
from server.core.errors import Unavailable
from server.store.factory import open_store
from tests.integration.devices.conftest import HEALTH, Api, Fleet, plane_settings
from tests.support.mosquitto import BrokerUnderTest, eventually, mosquitto_broker
from tests.support.servers import running_plane

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HUGE = b"9" * 4301  # one digit past CPython's int conversion limit: json.loads raised ValueError
HOSTILE_HEARTBEAT = b'{"fw":"1.0.0","heap":' + HUGE + b"}"
HOSTILE_PRESENCE = b'{"online":' + HUGE + b"}"


def dropped(reason: str) -> float:
    return metrics.sample("mqtt_messages_dropped_total", {"reason": reason})


async def health_of(plane: ControlPlane, service: str = "") -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(tmp_path / "mosquitto") as b:
        yield b


@asynccontextmanager
async def fleet_of(plane: ControlPlane, broker: BrokerUnderTest) -> AsyncIterator[Fleet]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        f = Fleet(plane, broker, channel)
        try:
            yield f
        finally:
            await asyncio.to_thread(f.close)


async def test_hostile_heartbeat_and_retained_presence_are_dropped_and_ingest_goes_on(
    own_broker: BrokerUnderTest, tmp_path: Path
) -> None:
    settings = plane_settings(tmp_path / "plane", own_broker, METRICS_PORT="0")  # restarted: no fixed port
    out_of_range0, wrong_type0 = dropped("out_of_range"), dropped("wrong_type")
    async with running_plane(ControlPlane(settings)) as plane, fleet_of(plane, own_broker) as fleet:
        alice = await fleet.user()
        creds = (await alice.register()).mqtt
        device_id = creds.username
        d = await fleet.device(creds.username, creds.password)
        await d.publish(f"devices/{device_id}/health", HOSTILE_HEARTBEAT)
        info = d.client.publish(f"devices/{device_id}/presence", HOSTILE_PRESENCE, qos=1, retain=True)
        await asyncio.to_thread(info.wait_for_publish, 3)
        await d.publish(f"devices/{device_id}/health", HEALTH)

        device = await alice.eventually_device(device_id, lambda x: x.health.heap == 20000)
        assert device.health.heap == 20000 and device.online
        assert await eventually(lambda: dropped("out_of_range") == out_of_range0 + 1)  # the heartbeat
        assert await eventually(lambda: dropped("wrong_type") == wrong_type0 + 1)  # the presence
        assert plane.bridge is not None and plane.bridge.is_connected
        assert await health_of(plane) == SERVING

    # A restart replays the retained hostile presence to the new bridge: dropped again, no harm.
    wrong_type1 = dropped("wrong_type")
    async with running_plane(ControlPlane(settings)) as plane, fleet_of(plane, own_broker) as fleet:
        assert await eventually(lambda: dropped("wrong_type") == wrong_type1 + 1)
        assert plane.bridge is not None and plane.bridge.is_connected
        assert await health_of(plane) == SERVING
        d = await fleet.device(creds.username, creds.password, online=False)
        await d.publish(f"devices/{device_id}/health", b'{"heap":1234,"uptime":5,"fw":"1.0.1"}')
        # Same settings, same store and token secret: alice's token still works.
        again = Api(plane, fleet.channel, alice.token)
        assert (await again.eventually_device(device_id, lambda x: x.health.heap == 1234)).firmware_version == "1.0.1"
        # Cleanup: an empty retained message removes the hostile one from the broker.
        await d.publish(f"devices/{device_id}/presence", b"", qos=1)


async def test_a_dead_listener_turns_health_not_serving_then_restarts(
    own_broker: BrokerUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = plane_settings(tmp_path / "plane", own_broker, METRICS_PORT="0")
    async with running_plane(ControlPlane(settings)) as plane, fleet_of(plane, own_broker) as fleet:
        bridge = plane.bridge
        assert bridge is not None
        alice = await fleet.user()
        creds = (await alice.register()).mqtt
        d = await fleet.device(creds.username, creds.password)
        assert (await alice.eventually_device(creds.username, lambda x: x.online)).online

        # No device input can end the listener any more (every per-message failure is a drop),
        # so the fault is injected: a monkeypatched dispatch that raises once, as a bug would.
        original = bridge._dispatch
        calls = 0

        async def broken_once(message: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("injected listener failure")
            await original(message)

        monkeypatch.setattr(bridge, "_dispatch", broken_once)
        failures0 = metrics.sample("mqtt_listener_failures_total")
        seen: list[Any] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            seen.append((await watch.read()).status)
            await d.publish(f"devices/{creds.username}/health", HEALTH)  # the message that "kills" it
            async with asyncio.timeout(10):
                while seen[-2:] != [NOT_SERVING, SERVING]:
                    seen.append((await watch.read()).status)
            watch.cancel()
        assert seen[0] == SERVING and NOT_SERVING in seen
        assert metrics.sample("mqtt_listener_failures_total") == failures0 + 1
        assert await health_of(plane, "iot.v1.DeviceService") == SERVING
        assert await health_of(plane, "iot.v1.AuthService") == SERVING
        # Reconnected and listening again: the next heartbeat is stored.
        await d.publish(f"devices/{creds.username}/health", b'{"heap":4321,"uptime":9,"fw":"1.0.0"}')
        assert (await alice.eventually_device(creds.username, lambda x: x.health.heap == 4321)).health.heap == 4321


async def test_health_is_not_serving_while_the_broker_is_down(own_broker: BrokerUnderTest, tmp_path: Path) -> None:
    settings = plane_settings(tmp_path / "plane", own_broker, METRICS_PORT="0")
    async with running_plane(ControlPlane(settings)) as plane:
        assert await health_of(plane) == SERVING
        own_broker.stop()
        assert await eventually_async(lambda: health_of(plane), NOT_SERVING)
        assert await health_of(plane, "iot.v1.DeviceService") == NOT_SERVING
        assert await health_of(plane, "iot.v1.AuthService") == SERVING  # logins need no broker
        own_broker.start()
        assert await eventually_async(lambda: health_of(plane), SERVING, within=20)


async def eventually_async(probe: Any, expected: Any, within: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await probe() != expected:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_shutdown_runs_every_step_when_one_fails(
    own_broker: BrokerUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Heartbeats stay in the write-behind buffer until the final flush of shutdown.
    settings = plane_settings(tmp_path / "plane", own_broker, METRICS_PORT="0", HEARTBEAT_FLUSH_SECONDS="60")
    plane = ControlPlane(settings)
    await plane.start()
    try:
        async with fleet_of(plane, own_broker) as fleet:
            alice = await fleet.user()
            creds = (await alice.register()).mqtt
            d = await fleet.device(creds.username, creds.password)
            await d.publish(f"devices/{creds.username}/health", HEALTH)  # first report: written through
            assert (await alice.eventually_device(creds.username, lambda x: x.health.heap == 20000)).online
            events = alice.devices.WatchDeviceEvents(
                device_pb2.WatchDeviceEventsRequest(device_id=creds.username), metadata=alice.md
            )
            await events.initial_metadata()
            await d.publish(f"devices/{creds.username}/health", b'{"heap":777,"uptime":121,"fw":"1.0.0"}')
            async with asyncio.timeout(5):
                while True:
                    event = await events.read()
                    assert isinstance(event, device_pb2.WatchDeviceEventsResponse)
                    if event.device.health.heap == 777:
                        break  # handed to the heartbeat writer, not yet in the store
            events.cancel()
    finally:
        store = plane.store
        assert plane.bridge is not None

        async def failing_stop(drain: float = 1.0) -> None:
            # Injected: the bridge's stop raising is how the original bug skipped the rest.
            raise RuntimeError("injected shutdown failure")

        monkeypatch.setattr(plane.bridge, "stop", failing_stop)
        await plane.stop(grace=1)
    # The later steps ran: the buffered heartbeat was flushed, then the store was closed.
    with pytest.raises(Unavailable):
        await store.devices.get(creds.username)
    reopened = await open_store(None, settings.data_dir)
    try:
        device = await reopened.devices.get(creds.username)
        assert device.health is not None and device.health.heap == 777
    finally:
        await reopened.close()
