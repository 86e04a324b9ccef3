"""Per-device broker accounts against a real Mosquitto with the dynamic-security plugin."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from server.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from server.mqtt.bridge import MqttBridge
from server.mqtt.provisioning import DynsecBrokerAdmin
from tests.integration.mqtt.conftest import RecordingHandler, new_id
from tests.support.mosquitto import ADMIN_USER, BrokerUnderTest, DeviceClient, eventually

HEALTH = b'{"heap":20000,"uptime":120,"fw":"1.0.0"}'
NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86


@pytest.fixture
def devices() -> Iterator[list[DeviceClient]]:
    made: list[DeviceClient] = []
    yield made
    for d in made:
        d.close()


async def connect(broker: BrokerUnderTest, devices: list[DeviceClient], username: str, password: str) -> DeviceClient:
    d = DeviceClient(broker.host, broker.port, username, password)
    devices.append(d)
    await asyncio.to_thread(d.connect)
    return d


async def test_device_heartbeat_reaches_handler_as_typed_report(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    bridge: MqttBridge,
    handler: RecordingHandler,
    devices: list[DeviceClient],
) -> None:
    dev = new_id()
    creds = await admin.create_device_client(dev, "s3cret-1")
    assert (creds.username, creds.host, creds.port) == (dev, broker.host, broker.port)
    d = await connect(broker, devices, creds.username, creds.password)
    assert d.connack is not None and not d.connack.is_failure
    rc = await d.publish(f"devices/{dev}/health", b'{"heap":20000,"uptime":120,"fw":"1.0.0","rssi":-60}')
    assert rc is not None and not rc.is_failure
    assert await eventually(lambda: len(handler.health) == 1)
    got_id, report = handler.health[0]
    assert got_id == dev
    assert (report.firmware_version, report.heap, report.uptime, report.rssi) == (
        "1.0.0",
        20000,
        120,
        -60,
    )


async def test_device_is_confined_to_its_own_topics(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    bridge: MqttBridge,
    handler: RecordingHandler,
    devices: list[DeviceClient],
) -> None:
    me, other = new_id(), new_id()
    await admin.create_device_client(me, "pw-me")
    await admin.create_device_client(other, "pw-other")
    # The admin account may watch everything: it is the monitor that must see nothing.
    monitor = await connect(broker, devices, ADMIN_USER, broker.admin_password)
    assert (await monitor.subscribe(f"devices/{other}/#"))[0].value < 0x80
    d = await connect(broker, devices, me, "pw-me")

    for topic in (f"devices/{other}/#", f"devices/{other}/command", "devices/+/health", "#"):
        (rc,) = await d.subscribe(topic)
        assert rc.value == NOT_AUTHORIZED, (topic, rc)
    for topic in (f"devices/{other}/health", f"devices/{other}/command", "other/topic"):
        rc2 = await d.publish(topic, HEALTH)
        assert rc2 is not None and rc2.value == NOT_AUTHORIZED, (topic, rc2)
    # Its own subtree is allowed.
    (own,) = await d.subscribe(f"devices/{me}/command")
    assert not own.is_failure
    await asyncio.sleep(0.3)
    assert monitor.messages == []
    assert handler.health == []


async def test_wrong_password_is_refused(
    broker: BrokerUnderTest, admin: DynsecBrokerAdmin, devices: list[DeviceClient]
) -> None:
    dev = new_id()
    await admin.create_device_client(dev, "right")
    d = await connect(broker, devices, dev, "wrong")
    assert d.connack is not None and d.connack.value in (BAD_CREDENTIALS, NOT_AUTHORIZED)
    stranger = await connect(broker, devices, new_id(), "whatever")
    assert stranger.connack is not None and stranger.connack.is_failure


async def test_disable_cuts_the_device_off_and_enable_lets_it_back(
    broker: BrokerUnderTest, admin: DynsecBrokerAdmin, devices: list[DeviceClient]
) -> None:
    dev = new_id()
    await admin.create_device_client(dev, "pw")
    d = await connect(broker, devices, dev, "pw")
    assert d.connack is not None and not d.connack.is_failure
    await admin.set_device_enabled(dev, False)
    assert await eventually(d.disconnected.is_set), "disabling did not disconnect the device"
    d.close()
    again = await connect(broker, devices, dev, "pw")
    assert again.connack is not None and again.connack.is_failure
    again.close()
    await admin.set_device_enabled(dev, True)
    back = await connect(broker, devices, dev, "pw")
    assert back.connack is not None and not back.connack.is_failure


async def test_create_is_idempotent_and_rekeys(
    broker: BrokerUnderTest, admin: DynsecBrokerAdmin, devices: list[DeviceClient]
) -> None:
    dev = new_id()
    await admin.create_device_client(dev, "first")
    await admin.create_device_client(dev, "second")
    old = await connect(broker, devices, dev, "first")
    assert old.connack is not None and old.connack.is_failure
    new = await connect(broker, devices, dev, "second")
    assert new.connack is not None and not new.connack.is_failure
    await admin.set_device_password(dev, "third")
    third = await connect(broker, devices, dev, "third")
    assert third.connack is not None and not third.connack.is_failure


async def test_delete_removes_the_account(
    broker: BrokerUnderTest, admin: DynsecBrokerAdmin, devices: list[DeviceClient]
) -> None:
    dev = new_id()
    await admin.create_device_client(dev, "pw")
    d = await connect(broker, devices, dev, "pw")
    await admin.delete_device_client(dev)
    assert await eventually(d.disconnected.is_set)
    d.close()
    gone = await connect(broker, devices, dev, "pw")
    assert gone.connack is not None and gone.connack.is_failure
    await admin.delete_device_client(dev)  # already gone: no error
    with pytest.raises(NotFound):
        await admin.set_device_enabled(dev, True)
    with pytest.raises(NotFound):
        await admin.set_device_password(dev, "x")


async def test_reserved_and_invalid_ids_are_refused(admin: DynsecBrokerAdmin) -> None:
    for taken in (ADMIN_USER, "backend"):
        with pytest.raises(AlreadyExists):
            await admin.create_device_client(taken, "pw")
    for bad in ("", "a/b", "a+", "#", "x" * 65):
        with pytest.raises(InvalidArgument):
            await admin.create_device_client(bad, "pw")


async def test_provisioning_without_a_broker_is_unavailable() -> None:
    from tools.mosquitto import free_port

    a = DynsecBrokerAdmin(f"mqtt://127.0.0.1:{free_port()}", "backend", "pw", timeout=1.0)
    with pytest.raises(Unavailable):
        await a.create_device_client(new_id(), "pw")
    await a.close()


async def test_a_device_account_connects_only_under_its_own_client_id(
    broker: BrokerUnderTest, admin: DynsecBrokerAdmin, devices: list[DeviceClient]
) -> None:
    victim, mine = new_id(), new_id()
    await admin.create_device_client(victim, "pw-victim")
    await admin.create_device_client(mine, "pw-mine")
    v = await connect(broker, devices, victim, "pw-victim")
    assert v.connack is not None and not v.connack.is_failure
    thief = DeviceClient(broker.host, broker.port, mine, "pw-mine", client_id=victim)
    devices.append(thief)
    await asyncio.to_thread(thief.connect)
    assert thief.connack is not None and thief.connack.value == NOT_AUTHORIZED
    await asyncio.sleep(0.3)
    assert not v.disconnected.is_set()


async def test_start_up_binding_is_one_listing_once_every_account_is_bound(
    broker: BrokerUnderTest, admin: DynsecBrokerAdmin
) -> None:
    await admin.create_device_client(new_id(), "pw")
    await admin.bind_device_client_ids()
    assert await admin.bind_device_client_ids() == 0
