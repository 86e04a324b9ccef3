"""The real control plane (in-process) wired to a real Mosquitto, driven over gRPC and MQTT."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from iot.v1 import admin_pb2_grpc, dashboard_pb2_grpc, device_pb2, device_pb2_grpc
from server.app import ControlPlane
from tests.support.mosquitto import BrokerUnderTest, DeviceClient, eventually, mosquitto_broker
from tests.support.net import free_port
from tests.support.servers import make_settings, running_plane, user_token

# Short enough that the sweep test is quick, long enough that a device answering a command
# right after its heartbeat is never swept mid-test.
OFFLINE_AFTER = 2.5
HEALTH = b'{"heap":20000,"uptime":120,"fw":"1.0.0","rssi":-60}'


def new_id(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def plane_settings(data_dir: Path, broker: BrokerUnderTest | None, **extra: str) -> Any:
    env = {
        "OFFLINE_AFTER_SECONDS": str(OFFLINE_AFTER),
        "COMMAND_TIMEOUT_SECONDS": "2",
        "HEARTBEAT_FLUSH_SECONDS": "0.05",
        "METRICS_PORT": str(free_port()),
    }
    if broker is not None:
        env |= {"MQTT_URL": broker.url, "MQTT_USER": broker.backend_user, "MQTT_PASS": broker.backend_password}
    return make_settings(data_dir, **(env | extra))


@dataclass
class Api:
    """gRPC stubs of one running plane, called as one user."""

    plane: ControlPlane
    channel: grpc.aio.Channel
    token: str
    user_id: str = ""

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def devices(self) -> device_pb2_grpc.DeviceServiceAsyncStub:
        return device_pb2_grpc.DeviceServiceStub(self.channel)

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceAsyncStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel)

    @property
    def dashboard(self) -> dashboard_pb2_grpc.DashboardServiceAsyncStub:
        return dashboard_pb2_grpc.DashboardServiceStub(self.channel)

    async def register(self, device_id: str | None = None, name: str = "lamp") -> device_pb2.RegisterDeviceResponse:
        request = device_pb2.RegisterDeviceRequest(device_id=new_id() if device_id is None else device_id, name=name)
        reply: device_pb2.RegisterDeviceResponse = await self.devices.RegisterDevice(request, metadata=self.md)
        return reply

    async def get(self, device_id: str) -> Any:
        return (await self.devices.GetDevice(device_pb2.GetDeviceRequest(device_id=device_id), metadata=self.md)).device

    async def eventually_device(self, device_id: str, predicate: Any, within: float = 3.0) -> Any:
        """Poll GetDevice until `predicate(device)` holds; returns the last device seen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            device = await self.get(device_id)
            if predicate(device) or loop.time() > deadline:
                return device
            await asyncio.sleep(0.05)


@dataclass
class Fleet:
    """A running plane and its broker; makes users and device clients, closes them after."""

    plane: ControlPlane
    broker: BrokerUnderTest
    channel: grpc.aio.Channel
    clients: list[DeviceClient] = field(default_factory=list)

    async def user(self, admin: bool = False) -> Api:
        name = new_id("admin" if admin else "user")
        token = await user_token(self.plane, name, admin=admin)
        caller = await self.plane.users.authenticate(token)
        return Api(self.plane, self.channel, token, caller.user_id)

    async def device(
        self, username: str, password: str, *, will: bool = True, online: bool = True, connect: bool = True
    ) -> DeviceClient:
        """A paho MQTT 5 client as an ESP32 would be: Last Will `offline` on its presence topic."""
        d = DeviceClient(
            self.broker.host,
            self.broker.port,
            username,
            password,
            will=(f"devices/{username}/presence", b"offline") if will else None,
        )
        self.clients.append(d)
        if connect:
            rc = await asyncio.to_thread(d.connect)
            assert rc is not None and not rc.is_failure, rc
            if online:
                await d.publish(f"devices/{username}/presence", b"online")
        return d

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("devices-mosquitto"))) as b:
        yield b


@pytest.fixture(scope="module")
async def shared_plane(
    broker: BrokerUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(plane_settings(tmp_path_factory.mktemp("plane"), broker))
    async with running_plane(plane):
        assert plane.bridge is not None and await plane.bridge.wait_connected(5)
        yield plane


@pytest.fixture
async def fleet(shared_plane: ControlPlane, broker: BrokerUnderTest) -> AsyncIterator[Fleet]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{shared_plane.port}") as channel:
        f = Fleet(shared_plane, broker, channel)
        try:
            yield f
        finally:
            await asyncio.to_thread(f.close)


__all__ = ["HEALTH", "Api", "Fleet", "eventually", "new_id", "plane_settings"]
