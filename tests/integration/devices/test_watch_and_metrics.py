"""The device event stream (gRPC server streaming) and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc

from iot.v1 import device_pb2
from server.app import ControlPlane
from tests.integration.devices.conftest import HEALTH, Fleet, plane_settings
from tests.support.mosquitto import DeviceClient, eventually, mosquitto_broker
from tests.support.servers import running_plane, user_token

KIND = device_pb2.DeviceEventKind


async def next_event(call: grpc.aio.UnaryStreamCall, within: float = 3.0) -> device_pb2.WatchDeviceEventsResponse:  # type: ignore[type-arg]
    async with asyncio.timeout(within):
        event = await call.read()
    assert event is not grpc.aio.EOF
    assert isinstance(event, device_pb2.WatchDeviceEventsResponse)
    return event


async def test_watch_streams_a_users_own_device_events_only(fleet: Fleet) -> None:
    alice, bob = await fleet.user(), await fleet.user()
    call = alice.devices.WatchDeviceEvents(device_pb2.WatchDeviceEventsRequest(), metadata=alice.md)
    await call.initial_metadata()  # sent once the server has subscribed
    theirs = (await bob.register()).mqtt
    other = await fleet.device(theirs.username, theirs.password)
    await other.publish(f"devices/{theirs.username}/health", HEALTH)

    creds = (await alice.register()).mqtt
    d = await fleet.device(creds.username, creds.password)  # publishes "online"
    await d.publish(f"devices/{creds.username}/health", HEALTH)
    await d.publish(f"devices/{creds.username}/status", b'{"led":"ON"}')
    d.drop_connection()  # its Last Will: offline

    seen = []
    for _ in range(5):
        event = await next_event(call)
        assert event.device_id == creds.username  # nothing of bob's
        seen.append(event.kind)
    assert seen == [
        KIND.DEVICE_REGISTERED,
        KIND.DEVICE_ONLINE,
        KIND.DEVICE_HEALTH,
        KIND.DEVICE_STATUS,
        KIND.DEVICE_OFFLINE,
    ]
    call.cancel()


async def test_watch_of_one_device_and_of_someone_elses(fleet: Fleet) -> None:
    alice, bob = await fleet.user(), await fleet.user()
    one = (await alice.register()).mqtt
    two = (await alice.register()).mqtt
    call = alice.devices.WatchDeviceEvents(
        device_pb2.WatchDeviceEventsRequest(device_id=one.username), metadata=alice.md
    )
    await call.initial_metadata()
    for creds in (two, one):
        d = await fleet.device(creds.username, creds.password, online=False)
        await d.publish(f"devices/{creds.username}/health", HEALTH)
    event = await next_event(call)
    assert (event.kind, event.device_id) == (KIND.DEVICE_ONLINE, one.username)
    assert event.device.owner_id == alice.user_id and event.HasField("time")
    call.cancel()
    spy = bob.devices.WatchDeviceEvents(device_pb2.WatchDeviceEventsRequest(device_id=one.username), metadata=bob.md)
    try:
        await spy.read()
        raise AssertionError("bob watched alice's device")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND


async def test_metrics_endpoint(fleet: Fleet) -> None:
    alice = await fleet.user()
    creds = (await alice.register()).mqtt
    d = await fleet.device(creds.username, creds.password)
    await d.publish(f"devices/{creds.username}/health", b"[1,2]")  # dropped: not an object
    await d.publish(f"devices/{creds.username}/health", HEALTH)
    await alice.eventually_device(creds.username, lambda x: x.online)
    assert fleet.plane.metrics_server is not None
    url = f"http://127.0.0.1:{fleet.plane.metrics_server.port}/metrics"
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        online = [line for line in text.splitlines() if line.startswith("devices_online ")]
        # devices_online is refreshed by the sweep (every OFFLINE_AFTER / 3 s)
        if (online and float(online[0].split()[1]) >= 1) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert 'mqtt_messages_dropped_total{reason="not_object"}' in text
    assert 'mqtt_messages_received_total{kind="health"}' in text
    assert 'grpc_server_handled_total{code="OK",method="/iot.v1.DeviceService/RegisterDevice"}' in text
    assert "grpc_server_handling_seconds_bucket" in text
    assert online and float(online[0].split()[1]) >= 1


async def test_the_bridge_survives_a_broker_restart(tmp_path: Path) -> None:
    with mosquitto_broker(tmp_path / "mosquitto") as broker:
        plane = ControlPlane(plane_settings(tmp_path / "plane", broker, METRICS_PORT="0"))
        async with running_plane(plane), grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            from iot.v1 import device_pb2_grpc

            md = (("authorization", f"Bearer {await user_token(plane)}"),)
            stub = device_pb2_grpc.DeviceServiceStub(channel)
            reply = await stub.RegisterDevice(
                device_pb2.RegisterDeviceRequest(device_id="lamp-1", name="n"), metadata=md
            )
            creds = reply.mqtt
            assert plane.bridge is not None and plane.bridge.connections == 1

            await asyncio.to_thread(broker.stop)
            await asyncio.to_thread(broker.start)  # same port and data dir: accounts survive
            assert await eventually(lambda: plane.bridge is not None and plane.bridge.connections >= 2, within=15)

            d = DeviceClient(broker.host, broker.port, creds.username, creds.password)
            try:
                rc = await asyncio.to_thread(d.connect)
                assert rc is not None and not rc.is_failure
                await d.publish("devices/lamp-1/health", b'{"heap":5,"uptime":6,"fw":"3.0.0"}')
                for _ in range(100):
                    device = (await stub.GetDevice(device_pb2.GetDeviceRequest(device_id="lamp-1"), metadata=md)).device
                    if device.firmware_version == "3.0.0":
                        break
                    await asyncio.sleep(0.05)
                assert device.online and device.firmware_version == "3.0.0"
            finally:
                await asyncio.to_thread(d.close)
