"""Devices talking over MQTT to the real plane: health, LED commands and acknowledgements, ACLs."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from iot.v1 import common_pb2, dashboard_pb2, device_pb2
from server import metrics
from tests.integration.devices.conftest import HEALTH, Api, Fleet, eventually, new_id
from tests.support.mosquitto import DeviceClient

NOT_AUTHORIZED = 0x87


async def online_device(fleet: Fleet, api: Api, fw: str = "1.0.0") -> tuple[str, DeviceClient]:
    creds = (await api.register()).mqtt
    d = await fleet.device(creds.username, creds.password)
    await d.publish(f"devices/{creds.username}/health", json.dumps({"heap": 20000, "uptime": 120, "fw": fw}))
    device = await api.eventually_device(creds.username, lambda x: x.online and x.firmware_version == fw)
    assert device.online and device.firmware_version == fw
    return creds.username, d


def answer_led_commands(d: DeviceClient, device_id: str, echo_id: bool = True) -> None:
    """Make the simulated device switch its LED and report it, as the seed firmware does."""

    def on_message(_c: object, _u: object, msg: object) -> None:
        command = json.loads(msg.payload)  # type: ignore[attr-defined]
        d.messages.append(msg)  # type: ignore[arg-type]
        status = {"led": command["state"]} | ({"id": command["id"]} if echo_id else {})
        d.client.publish(f"devices/{device_id}/status", json.dumps(status), qos=1)

    d.client.on_message = on_message


async def test_heartbeat_shows_the_device_online_with_its_firmware(fleet: Fleet) -> None:
    alice = await fleet.user()
    device_id, d = await online_device(fleet, alice, fw="2.3.4")
    await d.publish(f"devices/{device_id}/health", b'{"heap":18000,"uptime":200,"fw":"2.3.4","rssi":-55,"temp":21.5}')
    device = await alice.eventually_device(device_id, lambda x: x.health.heap == 18000)
    assert (device.health.heap, device.health.uptime, device.health.rssi) == (18000, 200, -55)
    assert device.health.extra["temp"] == "21.5" and device.HasField("last_seen")
    silent = (await alice.register()).device.device_id  # never connects
    view = await alice.dashboard.GetDashboard(dashboard_pb2.GetDashboardRequest(), metadata=alice.md)
    assert [x.device_id for x in view.devices] == [device_id, silent]
    assert view.devices[0].ota_status == common_pb2.OTA_JOB_STATUS_UNSPECIFIED
    assert view.devices[0].online and not view.devices[1].online
    assert (view.totals.devices, view.totals.online, view.totals.offline) == (2, 1, 1)
    assert dict(view.totals.by_firmware) == {"2.3.4": 1, "unknown": 1}


async def test_led_command_reaches_the_device_and_its_ack_is_reported(fleet: Fleet) -> None:
    alice = await fleet.user()
    device_id, d = await online_device(fleet, alice)
    assert (await d.subscribe(f"devices/{device_id}/command"))[0].value < 0x80
    answer_led_commands(d, device_id)
    reply = await alice.devices.SetLed(
        device_pb2.SetLedRequest(device_id=device_id, state=common_pb2.ON), metadata=alice.md
    )
    assert reply.acknowledged and reply.state == common_pb2.ON and reply.command_id
    command = json.loads(d.messages[-1].payload)
    assert command == {"id": reply.command_id, "cmd": "led", "state": "ON"}
    assert d.messages[-1].qos == 1
    assert (await alice.get(device_id)).led == common_pb2.ON


async def test_an_ack_without_the_command_id_counts_by_state(fleet: Fleet) -> None:
    alice = await fleet.user()
    device_id, d = await online_device(fleet, alice)
    await d.subscribe(f"devices/{device_id}/command")
    answer_led_commands(d, device_id, echo_id=False)
    reply = await alice.devices.SetLed(
        device_pb2.SetLedRequest(device_id=device_id, state=common_pb2.OFF), metadata=alice.md
    )
    assert reply.acknowledged and (await alice.get(device_id)).led == common_pb2.OFF


async def test_a_silent_device_is_reported_unacknowledged_after_the_timeout(fleet: Fleet) -> None:
    alice = await fleet.user()
    device_id, d = await online_device(fleet, alice)
    await d.subscribe(f"devices/{device_id}/command")
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await alice.devices.SetLed(
        device_pb2.SetLedRequest(device_id=device_id, state=common_pb2.ON, timeout_ms=400), metadata=alice.md
    )
    assert not reply.acknowledged and 0.35 < loop.time() - started < 2
    assert await eventually(lambda: len(d.messages) == 1)  # it did get the command
    assert (await alice.get(device_id)).led == common_pb2.LED_STATE_UNSPECIFIED  # never reported


async def test_led_to_an_offline_device_is_a_failed_precondition(fleet: Fleet) -> None:
    alice = await fleet.user()
    device_id = (await alice.register()).device.device_id
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await alice.devices.SetLed(
            device_pb2.SetLedRequest(device_id=device_id, state=common_pb2.ON), metadata=alice.md
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "device is offline"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await alice.devices.SetLed(device_pb2.SetLedRequest(device_id=device_id), metadata=alice.md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_device_cannot_touch_another_devices_topics(fleet: Fleet) -> None:
    alice = await fleet.user()
    victim, _ = await online_device(fleet, alice, fw="1.0.0")
    creds = (await alice.register()).mqtt
    intruder = await fleet.device(creds.username, creds.password)
    for topic in (f"devices/{victim}/command", f"devices/{victim}/#", "devices/+/health"):
        (rc,) = await intruder.subscribe(topic)
        assert rc.value == NOT_AUTHORIZED, topic
    rc2 = await intruder.publish(f"devices/{victim}/health", b'{"heap":1,"uptime":1,"fw":"6.6.6"}')
    assert rc2 is not None and rc2.value == NOT_AUTHORIZED
    await asyncio.sleep(0.2)
    assert (await alice.get(victim)).firmware_version == "1.0.0"


async def test_malformed_and_unknown_device_messages_are_dropped_and_counted(fleet: Fleet) -> None:
    alice = await fleet.user()
    device_id, d = await online_device(fleet, alice)
    before = {r: metrics.sample("mqtt_messages_dropped_total", {"reason": r}) for r in ("malformed_json", "wrong_type")}
    await d.publish(f"devices/{device_id}/health", b"{not json")
    await d.publish(f"devices/{device_id}/health", b'{"heap":"lots","uptime":1,"fw":"1.0.0"}')
    assert await eventually(
        lambda: all(metrics.sample("mqtt_messages_dropped_total", {"reason": r}) == before[r] + 1 for r in before)
    )
    # The bridge is still there for the next good message.
    await d.publish(f"devices/{device_id}/health", b'{"heap":1234,"uptime":5,"fw":"1.0.1"}')
    assert (await alice.eventually_device(device_id, lambda x: x.firmware_version == "1.0.1")).health.heap == 1234
    unknown = metrics.sample("mqtt_messages_dropped_total", {"reason": "unknown_device"})
    backend = DeviceClient(
        fleet.broker.host, fleet.broker.port, fleet.broker.backend_user, fleet.broker.backend_password
    )
    fleet.clients.append(backend)
    await asyncio.to_thread(backend.connect)
    await backend.publish(f"devices/{new_id()}/health", HEALTH)
    assert await eventually(
        lambda: metrics.sample("mqtt_messages_dropped_total", {"reason": "unknown_device"}) > unknown
    )
