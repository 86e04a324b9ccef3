"""The seed's REST device paths through the real Envoy, to the real plane and a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from server.app import ControlPlane
from tests.support.mosquitto import BrokerUnderTest, DeviceClient, mosquitto_broker
from tests.support.net import http
from tests.support.servers import make_settings, running_gateway, running_plane, user_token


@dataclass
class RestFleet:
    base: str
    plane: ControlPlane
    broker: BrokerUnderTest
    clients: list[DeviceClient] = field(default_factory=list)

    async def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        # urllib blocks; the gRPC server shares this event loop, so the call runs in a thread.
        return await asyncio.to_thread(http, method, self.base + path, body, token)

    async def user(self, admin: bool = False) -> str:
        return await user_token(self.plane, f"u{uuid.uuid4().hex[:10]}", admin=admin)

    async def connect(self, mqtt: dict[str, Any], presence: bool = True) -> DeviceClient:
        """Connect as a device with the credentials a registration returned (camelCase JSON)."""
        d = DeviceClient(
            mqtt["host"],
            mqtt["port"],
            mqtt["username"],
            mqtt["password"],
            client_id=mqtt["clientId"],
            will=(f"devices/{mqtt['username']}/presence", b"offline"),
        )
        self.clients.append(d)
        rc = await asyncio.to_thread(d.connect)
        assert rc is not None and not rc.is_failure, rc
        if presence:
            await d.publish(f"devices/{mqtt['username']}/presence", b"online")
        return d

    async def heartbeat(self, d: DeviceClient, fw: str) -> None:
        await d.publish(f"devices/{d.username}/health", json.dumps({"heap": 20000, "uptime": 120, "fw": fw}))

    async def device_list(self, token: str, path: str = "/api/device") -> dict[str, dict[str, Any]]:
        status, body = await self.call("GET", path, token)
        assert status == 200, body
        return {d["deviceId"]: d for d in body.get("devices", [])}

    async def until(self, token: str, device_id: str, predicate: Any, within: float = 3.0) -> dict[str, Any]:
        """Poll GET /api/device until the device satisfies `predicate`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            device = (await self.device_list(token)).get(device_id, {})
            if predicate(device) or loop.time() > deadline:
                return device
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def rest_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("rest-mosquitto"))) as b:
        yield b


@pytest.fixture(scope="module")
async def rest_fleet(
    rest_broker: BrokerUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RestFleet]:
    tmp = tmp_path_factory.mktemp("rest-plane")
    settings = make_settings(
        tmp,
        MQTT_URL=rest_broker.url,
        MQTT_USER=rest_broker.backend_user,
        MQTT_PASS=rest_broker.backend_password,
        COMMAND_TIMEOUT_SECONDS="1",
        HEARTBEAT_FLUSH_SECONDS="0.05",
    )
    plane = ControlPlane(settings)
    async with running_plane(plane):
        with running_gateway(plane.port, tmp / "envoy") as gateway:
            fleet = RestFleet(f"http://127.0.0.1:{gateway.port}", plane, rest_broker)
            try:
                yield fleet
            finally:
                for c in fleet.clients:
                    await asyncio.to_thread(c.close)
