"""A staged rollout for real: Mosquitto, the control plane in-process, Envoy for REST, release
folders built and signed by firmware_tools in the local store, and a simulated fleet that
downloads, verifies, installs and reboots (or fails as its faults say)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.app import ControlPlane
from simulator.api import RestApi
from simulator.faults import FaultConfig
from simulator.fleet import Fleet, FleetConfig
from tests.support.mosquitto import BrokerUnderTest, mosquitto_broker
from tests.support.net import http
from tests.support.releases import ReleaseRoot, release_root
from tests.support.servers import make_settings, running_gateway, running_plane, user_token

PASSWORD = "correct horse battery"
Counters = dict[str, int]


@dataclass
class RolloutStack:
    base: str
    plane: ControlPlane
    admin: str  # an admin's bearer token
    releases: ReleaseRoot
    tmp: Path

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        # urllib blocks and the plane shares this event loop: the call runs in a thread.
        return await asyncio.to_thread(http, method, self.base + path, body, token or self.admin)

    async def rollout(self, rollout_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/rollouts/{rollout_id}")
        assert status == 200, body
        result: dict[str, Any] = body["rollout"]
        return result

    async def until(
        self,
        rollout_id: str,
        predicate: Callable[[dict[str, Any]], bool],
        within: float,
        each: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll GetRollout until `predicate` holds; fails with the last answer at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            current = await self.rollout(rollout_id)
            if each is not None:
                each(current)
            if predicate(current):
                return current
            assert loop.time() < deadline, f"gave up waiting; the rollout is {current}"
            await asyncio.sleep(0.1)

    @asynccontextmanager
    async def fleet(self, devices: int, faults: FaultConfig | None = None) -> AsyncIterator[tuple[Fleet, str]]:
        """A running simulated fleet on firmware 1.0.0 and its owner's token."""
        prefix = f"ro{uuid.uuid4().hex[:6]}"
        email = f"{prefix}@example.com"
        config = FleetConfig(
            api=self.base,
            email=email,
            password=PASSWORD,
            register_user=True,
            register=True,
            devices=devices,
            prefix=prefix,
            heartbeat=0.3,
            firmware="1.0.0",
            state_file=self.tmp / f"{prefix}.json",
            faults=faults or FaultConfig(),
            seed=7,
            ramp=0.2,
            public_key=self.releases.verifier(),
        )
        fleet = Fleet(config)
        await fleet.start()
        try:
            assert await fleet.wait_connected(10)
            owner = await asyncio.to_thread(RestApi(self.base).login, email, PASSWORD)
            # Wait until the plane sees every device online on 1.0.0 (heartbeats are written behind).
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while True:
                status, body = await self.call("GET", "/api/device?pageSize=500", token=owner)
                seen = body.get("devices", []) if status == 200 else []
                if len(seen) == devices and all(d.get("online") and d.get("firmwareVersion") == "1.0.0" for d in seen):
                    break
                assert loop.time() < deadline, f"fleet not online: {body}"
                await asyncio.sleep(0.05)
            yield fleet, owner
        finally:
            await fleet.stop()


def counters(rollout: dict[str, Any]) -> Counters:
    c = rollout.get("counters", {})
    return {k: int(c.get(k, 0)) for k in ("targeted", "pending", "inProgress", "succeeded", "failed")}


async def stable(read: Callable[[], Awaitable[Any]], for_seconds: float) -> Any:
    """The value read now, asserted unchanged for `for_seconds` (read every 0.2 s)."""
    first = await read()
    loop = asyncio.get_running_loop()
    end = loop.time() + for_seconds
    while loop.time() < end:
        await asyncio.sleep(0.2)
        assert await read() == first
    return first


@pytest.fixture(scope="module")
def rollout_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("rollout-mosquitto"))) as b:
        yield b


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> ReleaseRoot:
    return release_root(tmp_path_factory.mktemp("rollout-releases"), ("1.0.0", "1.1.0"), "1.1.0")


@pytest.fixture
async def stack(rollout_broker: BrokerUnderTest, releases: ReleaseRoot, tmp_path: Path) -> AsyncIterator[RolloutStack]:
    """A fresh plane (and database) per test: a rollout targets every device of the platform,
    so fleets of earlier tests must not linger in it."""
    settings = make_settings(
        tmp_path / "plane",
        MQTT_URL=rollout_broker.url,
        MQTT_USER=rollout_broker.backend_user,
        MQTT_PASS=rollout_broker.backend_password,
        HEARTBEAT_FLUSH_SECONDS="0.05",
        FIRMWARE_DIR=str(releases.root),
        FIRMWARE_PUBLIC_KEY_FILE=str(releases.public_key),
        FIRMWARE_CACHE_SECONDS="0",
    )
    plane = ControlPlane(settings)
    async with running_plane(plane):
        assert plane.bridge is not None and await plane.bridge.wait_connected(5)
        admin = await user_token(plane, "root", admin=True)
        with running_gateway(plane.port, tmp_path / "envoy") as gateway:
            yield RolloutStack(f"http://127.0.0.1:{gateway.port}", plane, admin, releases, tmp_path)
