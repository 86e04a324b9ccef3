"""The simulator against the real thing: Mosquitto, the control plane in-process, Envoy for REST,
and a tiny HTTP server for firmware (the test publishes OTA jobs as the control plane would)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from server.app import ControlPlane
from server.mqtt.dynsec import device_acls, device_role
from simulator.api import RestApi
from simulator.mqtt_device import Credentials
from tests.support.factory import Factory
from tests.support.mosquitto import BrokerUnderTest, mosquitto_broker
from tests.support.net import free_port, http
from tests.support.servers import make_settings, running_gateway, running_plane
from tools.mosquitto import dynsec_commands

PASSWORD = "correct horse battery"


def new_prefix() -> str:
    return f"sim{uuid.uuid4().hex[:6]}"


@dataclass
class Stack:
    base: str
    plane: ControlPlane
    broker: BrokerUnderTest

    async def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        # urllib blocks and the plane shares this event loop: the call runs in a thread.
        return await asyncio.to_thread(http, method, self.base + path, body, token)

    async def account(self) -> tuple[str, str]:
        """A fresh (email, token) registered and logged in through REST."""
        email = f"{new_prefix()}@example.com"
        api = RestApi(self.base)
        await asyncio.to_thread(api.register_user, email.split("@", maxsplit=1)[0], email, PASSWORD)
        return email, await asyncio.to_thread(api.login, email, PASSWORD)

    async def device_credentials(self, token: str, device_id: str) -> Credentials:
        mqtt = await asyncio.to_thread(RestApi(self.base, token).register_device, device_id, device_id)
        assert mqtt is not None
        return Credentials(device_id, mqtt["password"], mqtt["host"], int(mqtt["port"]))

    async def bulk_devices(self, email: str, prefix: str, n: int) -> list[Credentials]:
        """`n` devices of the account, provisioned in bulk: REST registers one device per broker
        round trip (~0.1 s each), too slow for a fleet of hundreds. The same records and broker
        accounts are made directly, in dynamic-security batches."""
        owner = await self.plane.store.users.get_by_email(email)
        factory = Factory()
        ids = [f"{prefix}-{i:04d}" for i in range(1, n + 1)]
        b = self.broker
        for start in range(0, n, 25):  # the plugin leaves a much larger request unanswered
            commands: list[dict[str, Any]] = []
            for device_id in ids[start : start + 25]:
                role = device_role(device_id)
                commands.append({"command": "createRole", "rolename": role})
                commands += [
                    {"command": "addRoleACL", "rolename": role, "acltype": t, "topic": f, "allow": True}
                    for t, f in device_acls(device_id)
                ]
                commands.append(
                    {
                        "command": "createClient",
                        "username": device_id,
                        "password": "pw-" + device_id,
                        "roles": [{"rolename": role}],
                    }
                )
            answers = await asyncio.to_thread(
                dynsec_commands, b.host, b.port, username=b.admin_user, password=b.admin_password, commands=commands
            )
            assert not [a for a in answers if a.get("error")], answers
        for device_id in ids:
            device = factory.device(owner_id=owner.user_id, device_id=device_id, broker_username=device_id)
            await self.plane.store.devices.create(device)
        return [Credentials(d, "pw-" + d, b.host, b.port) for d in ids]

    async def devices(self, token: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        page = ""
        while True:  # a bulk fleet spans pages
            status, body = await self.call("GET", f"/api/device?pageSize=500&pageToken={page}", token)
            assert status == 200, body
            found.update({d["deviceId"]: d for d in body.get("devices", [])})
            page = body.get("nextPageToken", "")
            if not page:
                return found

    async def until(self, token: str, predicate: Any, within: float = 5.0) -> dict[str, dict[str, Any]]:
        """Poll the device list until `predicate(devices)` holds (or the deadline passes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            devices = await self.devices(token)
            if predicate(devices) or loop.time() > deadline:
                return devices
            await asyncio.sleep(0.05)

    def dropped_total(self) -> float:
        assert self.plane.metrics_server is not None
        url = f"http://127.0.0.1:{self.plane.metrics_server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("mqtt_messages_dropped_total{")
        )

    def backend(self) -> aiomqtt.Client:
        """An MQTT client with the control plane's own account, to play its part in OTA."""
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.backend_user,
            password=self.broker.backend_password,
            identifier=f"test-cp-{uuid.uuid4().hex[:6]}",
            protocol=aiomqtt.ProtocolVersion.V5,
        )


@pytest.fixture(scope="module")
def sim_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("sim-mosquitto"))) as b:
        yield b


@pytest.fixture(scope="module")
async def stack(sim_broker: BrokerUnderTest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("sim-plane")
    settings = make_settings(
        tmp,
        MQTT_URL=sim_broker.url,
        MQTT_USER=sim_broker.backend_user,
        MQTT_PASS=sim_broker.backend_password,
        COMMAND_TIMEOUT_SECONDS="3",
        HEARTBEAT_FLUSH_SECONDS="0.05",
        METRICS_PORT=str(free_port()),
    )
    plane = ControlPlane(settings)
    async with running_plane(plane):
        assert plane.bridge is not None and await plane.bridge.wait_connected(5)
        with running_gateway(plane.port, tmp / "envoy") as gateway:
            yield Stack(f"http://127.0.0.1:{gateway.port}", plane, sim_broker)


class FirmwareServer:
    """Serves byte blobs over HTTP on a free port, from a thread (urllib is what devices use)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def firmware_server() -> Iterator[FirmwareServer]:
    server = FirmwareServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.close()


def job_json(**fields: Any) -> str:
    return json.dumps(fields)
