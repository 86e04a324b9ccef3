from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.core.errors import NotFound, PermissionDenied
from server.mqtt.bridge import MqttBridge
from server.mqtt.provisioning import DynsecBrokerAdmin
from server.ports.broker import HealthReport, OtaStatusReport, StatusReport
from tests.support.mosquitto import ADMIN_USER, BrokerUnderTest, mosquitto_broker


class RecordingHandler:
    """Core's stand-in: records every report; raises for unknown/blocked/broken devices."""

    def __init__(self) -> None:
        self.health: list[tuple[str, HealthReport]] = []
        self.status: list[tuple[str, StatusReport]] = []
        self.presence: list[tuple[str, bool]] = []
        self.ota: list[tuple[str, OtaStatusReport]] = []
        self.unknown: set[str] = set()
        self.blocked: set[str] = set()
        self.broken: set[str] = set()

    def _check(self, device_id: str) -> None:
        if device_id in self.unknown:
            raise NotFound("no such device")
        if device_id in self.blocked:
            raise PermissionDenied("device blocked")
        if device_id in self.broken:
            raise RuntimeError("core bug")

    async def on_health(self, device_id: str, report: HealthReport) -> None:
        self._check(device_id)
        self.health.append((device_id, report))

    async def on_status(self, device_id: str, report: StatusReport) -> None:
        self._check(device_id)
        self.status.append((device_id, report))

    async def on_presence(self, device_id: str, online: bool) -> None:
        self._check(device_id)
        self.presence.append((device_id, online))

    async def on_ota_status(self, device_id: str, report: OtaStatusReport) -> None:
        self._check(device_id)
        self.ota.append((device_id, report))


def new_id(prefix: str = "dev") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("mosquitto"))) as b:
        yield b


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerUnderTest]:
    """A broker for tests that stop or restart it."""
    with mosquitto_broker(tmp_path / "mosquitto") as b:
        yield b


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
async def admin(broker: BrokerUnderTest) -> AsyncIterator[DynsecBrokerAdmin]:
    a = DynsecBrokerAdmin(
        broker.url,
        broker.backend_user,
        broker.backend_password,
        reserved_usernames=[ADMIN_USER],
        timeout=3.0,
    )
    yield a
    await a.close()


@pytest.fixture
async def bridge(broker: BrokerUnderTest, handler: RecordingHandler) -> AsyncIterator[MqttBridge]:
    b = MqttBridge(
        broker.url,
        broker.backend_user,
        broker.backend_password,
        share_group=new_id("grp"),
        publish_timeout=2.0,
        connect_timeout=3.0,
    )
    assert await b.start(handler)
    yield b
    await b.stop()
