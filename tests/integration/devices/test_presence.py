"""Presence and offline detection, blocking, and what the activity log says about them."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from iot.v1 import admin_pb2, common_pb2, device_pb2
from server import metrics
from tests.integration.devices.conftest import HEALTH, OFFLINE_AFTER, Api, Fleet, eventually
from tests.support.mosquitto import DeviceClient


async def actions(api: Api, device_id: str) -> list[str]:
    """The device's activity entries, oldest first."""
    reply = await api.admin.ListActivity(admin_pb2.ListActivityRequest(target=device_id), metadata=api.md)
    return [e.action for e in reversed(reply.entries)]


async def test_unclean_disconnect_turns_the_device_offline_through_its_last_will(fleet: Fleet) -> None:
    alice, root = await fleet.user(), await fleet.user(admin=True)
    creds = (await alice.register()).mqtt
    d = await fleet.device(creds.username, creds.password)
    assert (await alice.eventually_device(creds.username, lambda x: x.online)).online
    loop = asyncio.get_running_loop()
    started = loop.time()
    d.drop_connection()  # power cut: no DISCONNECT, the broker publishes the will
    device = await alice.eventually_device(creds.username, lambda x: not x.online, within=3)
    assert not device.online and loop.time() - started < 2
    assert await actions(root, creds.username) == ["device.register", "device.online", "device.offline"]


async def test_a_silent_device_goes_offline_through_the_sweep(fleet: Fleet) -> None:
    alice, root = await fleet.user(), await fleet.user(admin=True)
    creds = (await alice.register()).mqtt
    d = await fleet.device(creds.username, creds.password, will=False, online=False)
    await d.publish(f"devices/{creds.username}/health", HEALTH)
    assert (await alice.eventually_device(creds.username, lambda x: x.online)).online
    # Still connected, but no heartbeat for longer than OFFLINE_AFTER.
    device = await alice.eventually_device(creds.username, lambda x: not x.online, within=OFFLINE_AFTER + 3)
    assert not device.online and d.client.is_connected()
    entries = await root.admin.ListActivity(
        admin_pb2.ListActivityRequest(target=creds.username, action="device.offline"), metadata=root.md
    )
    assert len(entries.entries) == 1 and entries.entries[0].details["reason"] == "no heartbeat"
    # The next heartbeat brings it back, with one entry for that transition too.
    await d.publish(f"devices/{creds.username}/health", HEALTH)
    assert (await alice.eventually_device(creds.username, lambda x: x.online)).online
    assert await actions(root, creds.username) == [
        "device.register",
        "device.online",
        "device.offline",
        "device.online",
    ]


async def test_blocking_cuts_the_device_off_and_unblocking_lets_it_back(fleet: Fleet) -> None:
    alice, root = await fleet.user(), await fleet.user(admin=True)
    creds = (await alice.register()).mqtt
    device_id = creds.username
    d = await fleet.device(device_id, creds.password)
    await d.publish(f"devices/{device_id}/health", HEALTH)
    assert (await alice.eventually_device(device_id, lambda x: x.online)).online

    # The seed's call has no body: absent `blocked` means block.
    reply = await root.admin.SetDeviceBlocked(admin_pb2.SetDeviceBlockedRequest(device_id=device_id), metadata=root.md)
    assert reply.device.blocked and not reply.device.online
    assert await asyncio.to_thread(d.disconnected.wait, 3)  # the broker kicked it
    again = DeviceClient(fleet.broker.host, fleet.broker.port, device_id, creds.password)
    fleet.clients.append(again)
    rc = await asyncio.to_thread(again.connect)
    assert rc is not None and rc.is_failure
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await alice.devices.SetLed(
            device_pb2.SetLedRequest(device_id=device_id, state=common_pb2.ON), metadata=alice.md
        )
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "device is blocked")
    # Telemetry that still reaches the bridge on its behalf is dropped and counted.
    dropped = metrics.sample("mqtt_messages_dropped_total", {"reason": "blocked_device"})
    backend = DeviceClient(
        fleet.broker.host, fleet.broker.port, fleet.broker.backend_user, fleet.broker.backend_password
    )
    fleet.clients.append(backend)
    await asyncio.to_thread(backend.connect)
    await backend.publish(f"devices/{device_id}/health", b'{"heap":1,"uptime":1,"fw":"9.9.9"}')
    assert await eventually(
        lambda: metrics.sample("mqtt_messages_dropped_total", {"reason": "blocked_device"}) > dropped
    )
    assert (await alice.get(device_id)).firmware_version == "1.0.0"
    # Idempotent: blocking again changes nothing and logs nothing.
    await root.admin.SetDeviceBlocked(
        admin_pb2.SetDeviceBlockedRequest(device_id=device_id, blocked=True), metadata=root.md
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:  # only admins block
        await alice.admin.SetDeviceBlocked(admin_pb2.SetDeviceBlockedRequest(device_id=device_id), metadata=alice.md)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    reply = await root.admin.SetDeviceBlocked(
        admin_pb2.SetDeviceBlockedRequest(device_id=device_id, blocked=False), metadata=root.md
    )
    assert not reply.device.blocked
    back = await fleet.device(device_id, creds.password)
    await back.publish(f"devices/{device_id}/health", HEALTH)
    assert (await alice.eventually_device(device_id, lambda x: x.online)).online
    assert await actions(root, device_id) == [
        "device.register",
        "device.online",
        "device.offline",  # set by the block itself
        "device.block",
        "device.unblock",
        "device.online",
    ]


async def test_admin_lists_the_fleet_with_filters(fleet: Fleet) -> None:
    alice, bob, root = await fleet.user(), await fleet.user(), await fleet.user(admin=True)
    a1 = (await alice.register()).mqtt
    a2 = (await alice.register()).device.device_id
    b1 = (await bob.register()).device.device_id
    d = await fleet.device(a1.username, a1.password, online=False)
    await d.publish(f"devices/{a1.username}/health", b'{"heap":1,"uptime":1,"fw":"7.7.7"}')
    assert (await alice.eventually_device(a1.username, lambda x: x.firmware_version == "7.7.7")).online

    async def ids(**filters: object) -> set[str]:
        request = admin_pb2.AdminServiceListDevicesRequest(page_size=500, **filters)  # type: ignore[arg-type]
        return {x.device_id for x in (await root.admin.ListDevices(request, metadata=root.md)).devices}

    assert {a1.username, a2, b1} <= await ids()
    assert await ids(owner_id=alice.user_id) == {a1.username, a2}
    assert await ids(owner_id=bob.user_id) == {b1}
    assert await ids(firmware_version="7.7.7") == {a1.username}
    assert await ids(owner_id=alice.user_id, online=True) == {a1.username}
    assert await ids(owner_id=alice.user_id, online=False) == {a2}
    page = await root.admin.ListDevices(
        admin_pb2.AdminServiceListDevicesRequest(owner_id=alice.user_id, page_size=1), metadata=root.md
    )
    assert len(page.devices) == 1 and page.next_page_token
