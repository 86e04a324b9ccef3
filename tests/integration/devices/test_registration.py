"""Registration, credentials, ownership and deletion, through the real plane and broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from iot.v1 import admin_pb2, common_pb2, device_pb2
from server.app import ControlPlane
from server.core.device_rules import credential_matches
from tests.integration.devices.conftest import HEALTH, Fleet, new_id, plane_settings
from tests.support.mosquitto import DeviceClient
from tests.support.servers import running_plane, user_token

REFUSED = (0x86, 0x87)  # bad user name or password / not authorized: Mosquitto answers the latter


async def test_registration_returns_credentials_once(fleet: Fleet) -> None:
    alice = await fleet.user()
    device_id = new_id()
    reply = await alice.register(device_id, "Kitchen lamp")
    assert reply.device.device_id == device_id and reply.device.owner_id == alice.user_id
    assert (reply.device.name, reply.device.platform, reply.device.online) == ("Kitchen lamp", "esp32s3", False)
    creds = reply.mqtt
    assert creds.username == device_id and len(creds.password) >= 32
    assert (creds.host, creds.port) == (fleet.broker.host, fleet.broker.port)
    assert creds.url == f"mqtt://{fleet.broker.host}:{fleet.broker.port}"
    # Only a hash is kept, and reading the device never shows a password.
    stored = await fleet.plane.store.devices.get(device_id)
    assert creds.password not in stored.credential_hash
    assert credential_matches(stored.credential_hash, creds.password)
    got = await alice.get(device_id)
    listed = await alice.devices.ListDevices(device_pb2.ListDevicesRequest(), metadata=alice.md)
    assert creds.password not in str(got) + str(listed)
    assert [d.device_id for d in listed.devices] == [device_id]
    # The credentials work at the broker.
    d = await fleet.device(creds.username, creds.password)
    assert d.connack is not None and not d.connack.is_failure


async def test_duplicate_and_invalid_ids_are_refused(fleet: Fleet) -> None:
    alice, bob = await fleet.user(), await fleet.user()
    device_id = new_id()
    await alice.register(device_id)
    for who in (alice, bob):  # unique fleet-wide, not per user
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await who.register(device_id)
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for bad in ("a/b", "+", "#", "x" * 65, "", "dev id", "dév"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await alice.register(bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    for name in ("x" * 65, "bell\x07"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await alice.register(new_id(), name)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
    request = device_pb2.RegisterDeviceRequest(device_id=new_id(), name="n", platform="esp8266")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await alice.devices.RegisterDevice(request, metadata=alice.md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A broker account name of the system's own can't be taken; nothing is left behind.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await alice.register("admin")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError):
        await alice.get("admin")


async def test_another_users_device_is_not_found(fleet: Fleet) -> None:
    alice, bob, root = await fleet.user(), await fleet.user(), await fleet.user(admin=True)
    mine = (await alice.register()).device.device_id
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "get": lambda: bob.devices.GetDevice(device_pb2.GetDeviceRequest(device_id=mine), metadata=bob.md),
        "led": lambda: bob.devices.SetLed(
            device_pb2.SetLedRequest(device_id=mine, state=common_pb2.ON), metadata=bob.md
        ),
        "delete": lambda: bob.devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id=mine), metadata=bob.md),
        "rotate": lambda: bob.devices.RotateCredentials(
            device_pb2.RotateCredentialsRequest(device_id=mine), metadata=bob.md
        ),
    }
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await bob.get("no-such-device")
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND, name
        # The same answer as for a device that doesn't exist: nothing to probe.
        assert info.value.details() == (missing.value.details() or "").replace("no-such-device", mine)
    listed = await bob.devices.ListDevices(device_pb2.ListDevicesRequest(), metadata=bob.md)
    assert list(listed.devices) == []
    assert (await root.get(mine)).owner_id == alice.user_id  # admins see every device
    with pytest.raises(grpc.aio.AioRpcError) as info:  # and only admins reach the fleet API
        await bob.admin.ListDevices(admin_pb2.AdminServiceListDevicesRequest(), metadata=bob.md)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_rotating_credentials_replaces_the_password(fleet: Fleet) -> None:
    alice = await fleet.user()
    creds = (await alice.register()).mqtt
    reply = await alice.devices.RotateCredentials(
        device_pb2.RotateCredentialsRequest(device_id=creds.username), metadata=alice.md
    )
    assert reply.mqtt.username == creds.username and reply.mqtt.password != creds.password
    old = DeviceClient(fleet.broker.host, fleet.broker.port, creds.username, creds.password)
    fleet.clients.append(old)
    rc = await asyncio.to_thread(old.connect)
    assert rc is not None and rc.value in REFUSED
    await fleet.device(creds.username, reply.mqtt.password)
    stored = await fleet.plane.store.devices.get(creds.username)
    assert credential_matches(stored.credential_hash, reply.mqtt.password)


async def test_delete_removes_the_broker_account(fleet: Fleet) -> None:
    alice = await fleet.user()
    creds = (await alice.register()).mqtt
    d = await fleet.device(creds.username, creds.password)
    await d.publish(f"devices/{creds.username}/health", HEALTH)
    await alice.devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id=creds.username), metadata=alice.md)
    assert await asyncio.to_thread(d.disconnected.wait, 3)  # deleting the account kicks it
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await alice.get(creds.username)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    again = DeviceClient(fleet.broker.host, fleet.broker.port, creds.username, creds.password)
    fleet.clients.append(again)
    rc = await asyncio.to_thread(again.connect)
    assert rc is not None and rc.is_failure
    # The id is free again.
    assert (await alice.register(creds.username)).device.device_id == creds.username


async def test_without_a_broker_device_writes_are_unavailable(tmp_path: Path) -> None:
    plane = ControlPlane(plane_settings(tmp_path, None, METRICS_PORT="0"))
    async with running_plane(plane), grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        from iot.v1 import device_pb2_grpc

        md = (("authorization", f"Bearer {await user_token(plane)}"),)
        stub = device_pb2_grpc.DeviceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.RegisterDevice(device_pb2.RegisterDeviceRequest(device_id="d1", name="n"), metadata=md)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == "MQTT broker not configured"
        assert list((await stub.ListDevices(device_pb2.ListDevicesRequest(), metadata=md)).devices) == []
