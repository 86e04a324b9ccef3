"""The issue's "done when", from a fresh `make run` (tools.stack): a user registers a device, a client
with the issued credentials shows up online with its firmware, LED commands, blocking and offline
detection behave."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mosquitto import DeviceClient
from tests.support.net import http
from tests.support.stack import Stack, running_stack

ADMIN = ("root@example.com", "root-password-123")


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "data", ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1]) as s:
        yield s


def login(stack: Stack, email: str, password: str) -> str:
    status, body = http("POST", stack.rest + "/api/auth/login", {"email": email, "password": password})
    assert status == 200, body
    return str(body["token"])


def until(get: Callable[[], Any], predicate: Callable[[Any], bool], within: float = 5.0) -> Any:
    deadline = time.monotonic() + within
    value = get()
    while not predicate(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = get()
    return value


def test_a_device_story_on_a_fresh_make_run(fresh_stack: Stack) -> None:
    stack = fresh_stack
    status, _ = http(
        "POST",
        stack.rest + "/api/auth/register",
        {"username": "maker", "email": "maker@example.com", "password": "maker-password"},
    )
    assert status == 200
    token = login(stack, "maker@example.com", "maker-password")
    status, body = http("POST", stack.rest + "/api/device/register", {"deviceId": "esp-1", "name": "Lamp"}, token)
    assert status == 200, body
    mqtt = body["mqtt"]
    assert (mqtt["host"], mqtt["port"]) == ("127.0.0.1", stack.ports["MQTT_PORT"])

    def device() -> dict[str, Any]:
        _, listed = http("GET", stack.rest + "/api/device", None, token)
        return next((d for d in listed.get("devices", []) if d["deviceId"] == "esp-1"), {})

    d = DeviceClient(
        mqtt["host"], mqtt["port"], mqtt["username"], mqtt["password"], will=("devices/esp-1/presence", b"offline")
    )
    try:
        rc = d.connect()
        assert rc is not None and not rc.is_failure
        d.client.publish("devices/esp-1/presence", "online", qos=1)
        d.client.publish("devices/esp-1/health", '{"heap":20000,"uptime":120,"fw":"1.0.0"}', qos=1)
        seen = until(device, lambda x: x.get("firmwareVersion") == "1.0.0")
        assert seen["online"] is True and seen["firmwareVersion"] == "1.0.0"

        def on_message(_c: object, _u: object, msg: Any) -> None:
            command = json.loads(msg.payload)
            d.client.publish("devices/esp-1/status", json.dumps({"led": command["state"], "id": command["id"]}), 1)

        d.client.on_message = on_message
        _, mid = d.client.subscribe("devices/esp-1/command", 1)
        assert until(lambda: mid in d.subacks, bool, within=3)
        status, reply = http("POST", stack.rest + "/api/device/esp-1/led", {"state": "ON"}, token)
        assert status == 200 and reply["acknowledged"] is True, reply

        d.drop_connection()  # power cut: the Last Will says offline
        assert until(device, lambda x: x.get("online") is False, within=3)["online"] is False
        status, err = http("POST", stack.rest + "/api/device/esp-1/led", {"state": "OFF"}, token)
        assert status == 400 and err["message"] == "device is offline"

        root = login(stack, *ADMIN)
        status, reply = http("POST", stack.rest + "/api/admin/device/esp-1/block", {}, root)
        assert status == 200 and reply["device"]["blocked"] is True
        again = DeviceClient(mqtt["host"], mqtt["port"], mqtt["username"], mqtt["password"])
        rc = again.connect()
        again.close()
        assert rc is not None and rc.is_failure
    finally:
        d.close()
