"""The bridge against a real Mosquitto: presence, commands, restarts, shared subscriptions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from server import metrics
from server.core.errors import Unavailable
from server.mqtt.bridge import MqttBridge
from server.mqtt.provisioning import DynsecBrokerAdmin
from tests.integration.mqtt.conftest import RecordingHandler, new_id
from tests.support.mosquitto import BrokerUnderTest, DeviceClient, eventually
from tools.mosquitto import free_port

HEALTH = b'{"heap":20000,"uptime":120,"fw":"1.0.0"}'


@pytest.fixture
def devices() -> Iterator[list[DeviceClient]]:
    made: list[DeviceClient] = []
    yield made
    for d in made:
        d.close()


async def device(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    devices: list[DeviceClient],
    *,
    will: bool = False,
) -> tuple[str, DeviceClient]:
    dev = new_id()
    await admin.create_device_client(dev, "pw")
    d = DeviceClient(
        broker.host,
        broker.port,
        dev,
        "pw",
        will=(f"devices/{dev}/presence", b"offline") if will else None,
    )
    devices.append(d)
    rc = await asyncio.to_thread(d.connect)
    assert rc is not None and not rc.is_failure, rc
    return dev, d


def dropped(reason: str) -> float:
    return metrics.sample("mqtt_messages_dropped_total", {"reason": reason})


async def test_last_will_reaches_handler_as_offline(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    bridge: MqttBridge,
    handler: RecordingHandler,
    devices: list[DeviceClient],
) -> None:
    dev, d = await device(broker, admin, devices, will=True)
    await d.publish(f"devices/{dev}/presence", b"online")
    assert await eventually(lambda: handler.presence == [(dev, True)])
    started = time.monotonic()
    d.drop_connection()
    assert await eventually(lambda: (dev, False) in handler.presence, within=2.0)
    assert time.monotonic() - started < 2.0


async def test_command_and_ota_reach_the_device(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    bridge: MqttBridge,
    devices: list[DeviceClient],
) -> None:
    dev, d = await device(broker, admin, devices)
    await d.subscribe(f"devices/{dev}/command")
    await d.subscribe(f"devices/{dev}/ota")
    before = metrics.sample("mqtt_messages_published_total", {"kind": "command"})
    await bridge.publish_command(dev, {"id": "c1", "cmd": "led", "state": "ON"})
    await bridge.publish_ota(dev, {"jobId": "j1", "version": "1.2.0", "url": "https://x/y"})
    assert await eventually(lambda: len(d.messages) == 2)
    by_topic = {m.topic: (m.qos, json.loads(m.payload)) for m in d.messages}
    assert by_topic[f"devices/{dev}/command"] == (1, {"id": "c1", "cmd": "led", "state": "ON"})
    assert by_topic[f"devices/{dev}/ota"][1]["jobId"] == "j1"
    assert metrics.sample("mqtt_messages_published_total", {"kind": "command"}) == before + 1


async def test_status_and_ota_status_reports(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    bridge: MqttBridge,
    handler: RecordingHandler,
    devices: list[DeviceClient],
) -> None:
    dev, d = await device(broker, admin, devices)
    await d.publish(f"devices/{dev}/status", b'{"led":"ON","id":"c1"}')
    await d.publish(f"devices/{dev}/ota/status", b'{"jobId":"j1","status":"IN_PROGRESS","progress":40}')
    assert await eventually(lambda: bool(handler.status and handler.ota))
    assert handler.status[0][1].led == "ON" and handler.status[0][1].command_id == "c1"
    assert handler.ota[0][1].progress == 40


async def test_unknown_blocked_and_failing_devices_are_counted_drops(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    bridge: MqttBridge,
    handler: RecordingHandler,
    devices: list[DeviceClient],
) -> None:
    (u, du), (b, db), (f, df) = [await device(broker, admin, devices) for _ in range(3)]
    handler.unknown.add(u)
    handler.blocked.add(b)
    handler.broken.add(f)
    before = {r: dropped(r) for r in ("unknown_device", "blocked_device", "handler_error")}
    await du.publish(f"devices/{u}/health", HEALTH)
    await db.publish(f"devices/{b}/health", HEALTH)
    await df.publish(f"devices/{f}/health", HEALTH)
    assert await eventually(lambda: all(dropped(r) == before[r] + 1 for r in before), within=3.0), {
        r: dropped(r) - before[r] for r in before
    }
    # The bridge is still alive and well.
    ok, dok = await device(broker, admin, devices)
    await dok.publish(f"devices/{ok}/health", HEALTH)
    assert await eventually(lambda: any(i == ok for i, _ in handler.health))


async def test_publish_without_broker_raises_unavailable_quickly() -> None:
    b = MqttBridge(f"mqtt://127.0.0.1:{free_port()}", "backend", "pw", connect_timeout=0.5)
    assert not await b.start(RecordingHandler(), wait=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await b.publish_command("dev-1", {"cmd": "led"})
    assert time.monotonic() - started < 1.0
    assert metrics.sample("mqtt_connected") == 0
    await b.stop()


@pytest.fixture
async def own_admin(own_broker: BrokerUnderTest) -> AsyncIterator[DynsecBrokerAdmin]:
    a = DynsecBrokerAdmin(own_broker.url, own_broker.backend_user, own_broker.backend_password)
    yield a
    await a.close()


async def test_bridge_survives_a_broker_restart(
    own_broker: BrokerUnderTest, own_admin: DynsecBrokerAdmin, devices: list[DeviceClient]
) -> None:
    handler = RecordingHandler()
    bridge = MqttBridge(
        own_broker.url,
        own_broker.backend_user,
        own_broker.backend_password,
        backoff_initial=0.1,
        backoff_max=0.5,
        publish_timeout=1.0,
    )
    assert await bridge.start(handler)
    try:
        dev, d = await device(own_broker, own_admin, devices)
        await d.publish(f"devices/{dev}/health", HEALTH)
        assert await eventually(lambda: len(handler.health) == 1)
        reconnects = metrics.sample("mqtt_reconnects_total")

        own_broker.stop()
        assert await eventually(lambda: not bridge.is_connected)
        with pytest.raises(Unavailable):
            await bridge.publish_command(dev, {"cmd": "led"})
        d.close()
        await asyncio.to_thread(own_broker.start)

        assert await bridge.wait_connected(5.0)
        assert metrics.sample("mqtt_reconnects_total") == reconnects + 1
        # The device's credentials survived the restart; the bridge resubscribed.
        d2 = DeviceClient(own_broker.host, own_broker.port, dev, "pw")
        devices.append(d2)
        rc = await asyncio.to_thread(d2.connect)
        assert rc is not None and not rc.is_failure
        await d2.publish(f"devices/{dev}/health", HEALTH)
        assert await eventually(lambda: len(handler.health) == 2)
        await bridge.publish_command(dev, {"cmd": "led", "state": "OFF"})
    finally:
        await bridge.stop()


async def test_two_bridges_in_one_share_group_split_the_traffic(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    devices: list[DeviceClient],
) -> None:
    group = new_id("grp")
    handlers = [RecordingHandler(), RecordingHandler()]
    bridges = [
        MqttBridge(broker.url, broker.backend_user, broker.backend_password, share_group=group) for _ in handlers
    ]
    for b, h in zip(bridges, handlers, strict=True):
        assert await b.start(h)
    try:
        dev, d = await device(broker, admin, devices)
        n = 40
        for i in range(n):
            await d.publish(f"devices/{dev}/health", json.dumps({"heap": i, "uptime": i, "fw": "1.0.0"}))
        assert await eventually(lambda: sum(len(h.health) for h in handlers) >= n)
        await asyncio.sleep(0.2)
        counts = [len(h.health) for h in handlers]
        assert sum(counts) == n, counts  # no duplicates
        assert all(c > 0 for c in counts), counts  # both got a share
        heaps = sorted(r.heap or 0 for h in handlers for _, r in h.health)
        assert heaps == list(range(n))
    finally:
        for b in bridges:
            await b.stop()
