"""A user's whole device story over the seed's REST paths: register, connect, see, control, lose."""

from __future__ import annotations

import asyncio
import json
import uuid

from tests.e2e.devices.conftest import RestFleet
from tests.support.mosquitto import DeviceClient


def new_id() -> str:
    return f"esp-{uuid.uuid4().hex[:8]}"


async def test_register_connect_and_see_it_online_with_its_firmware(rest_fleet: RestFleet) -> None:
    token = await rest_fleet.user()
    device_id = new_id()
    status, body = await rest_fleet.call("POST", "/api/device/register", token, {"deviceId": device_id, "name": "Lamp"})
    assert status == 200, body
    mqtt = body["mqtt"]
    assert mqtt["username"] == device_id and mqtt["password"] and mqtt["url"].startswith("mqtt://")
    assert mqtt["clientId"] == device_id  # the broker takes this account under no other client id
    assert body["device"]["deviceId"] == device_id and body["device"]["online"] is False
    status, body = await rest_fleet.call("POST", "/api/device/register", token, {"deviceId": device_id, "name": "x"})
    assert status == 409 and body["code"] == 6
    for bad in ("a/b", "+", "#", "x" * 65, ""):
        status, body = await rest_fleet.call("POST", "/api/device/register", token, {"deviceId": bad, "name": "x"})
        assert status == 400, (bad, body)

    d = await rest_fleet.connect(mqtt)
    await rest_fleet.heartbeat(d, "1.2.0")
    device = await rest_fleet.until(token, device_id, lambda x: x.get("firmwareVersion") == "1.2.0")
    assert device["online"] is True and device["lastSeen"] and device["health"]["heap"] == 20000
    assert "password" not in json.dumps(device)
    status, one = await rest_fleet.call("GET", f"/api/device/{device_id}", token)
    assert status == 200 and one["device"]["firmwareVersion"] == "1.2.0"

    second = new_id()
    status, body = await rest_fleet.call("POST", "/api/device/register", token, {"deviceId": second, "name": "Fan"})
    await rest_fleet.heartbeat(await rest_fleet.connect(body["mqtt"]), "1.1.0")
    await rest_fleet.until(token, second, lambda x: x.get("firmwareVersion") == "1.1.0")
    status, dash = await rest_fleet.call("GET", "/api/dashboard", token)
    assert status == 200
    assert {x["deviceId"] for x in dash["devices"]} == {device_id, second}
    assert dash["devices"][0]["otaStatus"] == "OTA_JOB_STATUS_UNSPECIFIED"
    totals = dash["totals"]
    assert (totals["devices"], totals["online"], totals["offline"]) == (2, 2, 0)
    assert totals["byFirmware"] == {"1.2.0": 1, "1.1.0": 1}


async def test_led_over_rest(rest_fleet: RestFleet) -> None:
    token = await rest_fleet.user()
    device_id = new_id()
    _, body = await rest_fleet.call("POST", "/api/device/register", token, {"deviceId": device_id, "name": "Lamp"})
    status, err = await rest_fleet.call("POST", f"/api/device/{device_id}/led", token, {"state": "ON"})
    assert status == 400 and err["message"] == "device is offline"

    d = await rest_fleet.connect(body["mqtt"])
    await rest_fleet.heartbeat(d, "1.0.0")
    await rest_fleet.until(token, device_id, lambda x: x.get("online"))
    await d.subscribe(f"devices/{device_id}/command")

    def on_message(_c: object, _u: object, msg: object) -> None:
        command = json.loads(msg.payload)  # type: ignore[attr-defined]
        d.client.publish(f"devices/{device_id}/status", json.dumps({"led": command["state"], "id": command["id"]}), 1)

    d.client.on_message = on_message
    status, reply = await rest_fleet.call("POST", f"/api/device/{device_id}/led", token, {"state": "ON"})
    assert status == 200, reply
    assert reply["acknowledged"] is True and reply["state"] == "ON" and reply["commandId"]
    device = await rest_fleet.until(token, device_id, lambda x: x.get("led") == "ON")
    assert device["led"] == "ON"
    d.client.on_message = None  # now it stays silent
    status, reply = await rest_fleet.call(
        "POST", f"/api/device/{device_id}/led", token, {"state": "OFF", "timeoutMs": 300}
    )
    assert status == 200 and reply["acknowledged"] is False
    status, err = await rest_fleet.call("POST", f"/api/device/{device_id}/led", token, {"state": "BLUE"})
    assert status == 400


async def test_tenants_admins_and_blocking_over_rest(rest_fleet: RestFleet) -> None:
    alice, bob, root = await rest_fleet.user(), await rest_fleet.user(), await rest_fleet.user(admin=True)
    device_id = new_id()
    _, body = await rest_fleet.call("POST", "/api/device/register", alice, {"deviceId": device_id, "name": "Lamp"})
    for method, path, payload in (
        ("GET", f"/api/device/{device_id}", None),
        ("POST", f"/api/device/{device_id}/led", {"state": "ON"}),
        ("DELETE", f"/api/device/{device_id}", None),
    ):
        status, err = await rest_fleet.call(method, path, bob, payload)
        assert status == 404 and err["message"] == f"device {device_id} not found", (method, path)
    assert device_id not in await rest_fleet.device_list(bob)
    status, _ = await rest_fleet.call("GET", "/api/admin/devices", alice)
    assert status == 403

    d = await rest_fleet.connect(body["mqtt"])
    await rest_fleet.heartbeat(d, "4.0.0")
    await rest_fleet.until(alice, device_id, lambda x: x.get("firmwareVersion") == "4.0.0")
    fleet = await rest_fleet.device_list(root, "/api/admin/devices?firmwareVersion=4.0.0&online=true")
    assert list(fleet) == [device_id]
    status, mine = await rest_fleet.call("GET", "/api/dashboard", root)
    assert status == 200 and device_id in {x["deviceId"] for x in mine["devices"]}  # admins see all

    status, reply = await rest_fleet.call("POST", f"/api/admin/device/{device_id}/block", root, {})
    assert status == 200 and reply["device"]["blocked"] is True
    assert await asyncio.to_thread(d.disconnected.wait, 3)
    again = DeviceClient(rest_fleet.broker.host, rest_fleet.broker.port, device_id, body["mqtt"]["password"])
    rest_fleet.clients.append(again)
    rc = await asyncio.to_thread(again.connect)
    assert rc is not None and rc.is_failure
    status, err = await rest_fleet.call("POST", f"/api/device/{device_id}/led", alice, {"state": "ON"})
    assert status == 400 and err["message"] == "device is blocked"
    status, reply = await rest_fleet.call("POST", f"/api/admin/device/{device_id}/block", root, {"blocked": False})
    assert status == 200 and reply["device"]["blocked"] is False
    await rest_fleet.connect(body["mqtt"])

    status, _ = await rest_fleet.call("DELETE", f"/api/device/{device_id}", alice)
    assert status == 200
    assert device_id not in await rest_fleet.device_list(alice)
