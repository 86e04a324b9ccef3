"""The one "latest good release" rule (core/releases.py), seen where users meet it: OTA check,
OTA start and rollout creation, on the real control plane over gRPC with a real Mosquitto and
the release folders published by firmware_tools to moto's S3 server.

Production ends up blocked only by a hand-edited block list (the API and the tool refuse to
block it on its own), so the tests write `rollback/blocked_versions.json` straight into the
bucket, as a seed-era list of version strings.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from iot.v1 import ota_pb2, ota_pb2_grpc, rollout_pb2, rollout_pb2_grpc
from server.app import ControlPlane
from tests.integration.devices.conftest import Api, Fleet, new_id, plane_settings
from tests.support.mosquitto import BrokerUnderTest, DeviceClient, eventually, mosquitto_broker
from tests.support.releases import PLATFORM, ReleaseRoot, release_root
from tests.support.s3 import S3Server, moto_s3_server
from tests.support.servers import running_plane


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("latest-good-mosquitto"))) as b:
        yield b


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> ReleaseRoot:
    # 1.3.0 is built but never promoted: above production, so never a fallback.
    return release_root(tmp_path_factory.mktemp("latest-good"), ("1.0.0", "1.1.0", "1.2.0", "1.3.0"), "1.2.0")


@asynccontextmanager
async def plane_with_blocked(
    broker: BrokerUnderTest, s3: S3Server, releases: ReleaseRoot, tmp: Path, blocked: list[str]
) -> AsyncIterator[Fleet]:
    """A plane over a fresh bucket holding the releases, with `blocked` as its block list."""
    bucket = f"fw-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    releases.publish(f"s3://{bucket}", s3.env())
    s3.client().put_object(
        Bucket=bucket, Key=f"{PLATFORM}/rollback/blocked_versions.json", Body=json.dumps(blocked).encode()
    )
    env = s3.env(bucket=bucket)
    env.pop("AWS_DEFAULT_REGION")
    settings = plane_settings(
        tmp,
        broker,
        MQTT_SHARE_GROUP=f"latest-good-{new_id()}",
        FIRMWARE_PUBLIC_KEY=releases.public_pem,
        FIRMWARE_CACHE_SECONDS="0",
        **env,
    )
    plane = ControlPlane(settings)
    async with running_plane(plane), grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        assert plane.bridge is not None and await plane.bridge.wait_connected(5)
        fleet = Fleet(plane, broker, channel)
        try:
            yield fleet
        finally:
            await asyncio.to_thread(fleet.close)


@pytest.fixture
async def production_blocked(
    broker: BrokerUnderTest, s3: S3Server, releases: ReleaseRoot, tmp_path: Path
) -> AsyncIterator[Fleet]:
    async with plane_with_blocked(broker, s3, releases, tmp_path, ["1.1.0", "1.2.0"]) as fleet:
        yield fleet


@pytest.fixture
async def all_blocked(
    broker: BrokerUnderTest, s3: S3Server, releases: ReleaseRoot, tmp_path: Path
) -> AsyncIterator[Fleet]:
    async with plane_with_blocked(broker, s3, releases, tmp_path, ["1.0.0", "1.1.0", "1.2.0"]) as fleet:
        yield fleet


async def online_device(fleet: Fleet, api: Api, fw: str) -> tuple[str, DeviceClient]:
    reg = await api.register()
    device_id = reg.device.device_id
    client = await fleet.device(reg.mqtt.username, reg.mqtt.password)
    await client.subscribe(f"devices/{device_id}/ota")
    await client.publish(f"devices/{device_id}/health", json.dumps({"heap": 20000, "uptime": 120, "fw": fw}))
    seen = await api.eventually_device(device_id, lambda d: d.online and d.firmware_version == fw)
    assert (seen.online, seen.firmware_version) == (True, fw)
    return device_id, client


async def check(api: Api, device_id: str) -> tuple[bool, str, str, bool]:
    stub = ota_pb2_grpc.OtaServiceStub(api.channel)
    r = await stub.CheckUpdate(ota_pb2.CheckUpdateRequest(device_id=device_id), metadata=api.md)
    return (r.update_available, r.latest_version, r.current_version, r.current_blocked)


async def start(api: Api, device_id: str, version: str = "") -> ota_pb2.StartUpdateResponse:
    stub = ota_pb2_grpc.OtaServiceStub(api.channel)
    reply: ota_pb2.StartUpdateResponse = await stub.StartUpdate(
        ota_pb2.StartUpdateRequest(device_id=device_id, version=version), metadata=api.md
    )
    return reply


async def create_rollout(admin: Api, version: str = "") -> rollout_pb2.CreateRolloutResponse:
    stub = rollout_pb2_grpc.RolloutServiceStub(admin.channel)
    reply: rollout_pb2.CreateRolloutResponse = await stub.CreateRollout(
        rollout_pb2.CreateRolloutRequest(platform=PLATFORM, version=version), metadata=admin.md
    )
    return reply


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_blocked_production_falls_back_to_the_newest_older_good_release(production_blocked: Fleet) -> None:
    fleet = production_blocked
    user, admin = await fleet.user(), await fleet.user(admin=True)
    on_production, client = await online_device(fleet, user, "1.2.0")
    on_fallback, _ = await online_device(fleet, user, "1.0.0")

    # Production 1.2.0 and 1.1.0 are blocked; 1.3.0 was never promoted: 1.0.0 is what is offered.
    assert await check(user, on_production) == (True, "1.0.0", "1.2.0", True)
    assert await check(user, on_fallback) == (False, "1.0.0", "1.0.0", False)

    # Starting without a version sends that same release, from its immutable release folder.
    job = (await start(user, on_production)).job
    assert (job.from_version, job.to_version) == ("1.2.0", "1.0.0")
    assert await eventually(lambda: bool(client.messages))
    offer = json.loads(client.messages[-1].payload)
    assert (offer["jobId"], offer["version"]) == (job.job_id, "1.0.0")
    assert "/esp32s3/releases/v1.0.0/firmware.bin" in offer["url"]

    already = await refused(start(user, on_fallback))
    assert already.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already running 1.0.0" in (already.details() or "")
    blocked = await refused(start(user, on_fallback, "1.2.0"))
    assert blocked.code() == grpc.StatusCode.FAILED_PRECONDITION and "1.2.0 is blocked" in (blocked.details() or "")

    # A rollout without a version resolves through the same rule; a blocked version is refused.
    blocked = await refused(create_rollout(admin, "1.2.0"))
    assert blocked.code() == grpc.StatusCode.FAILED_PRECONDITION and "1.2.0 is blocked" in (blocked.details() or "")
    rollout = (await create_rollout(admin)).rollout
    assert rollout.version == "1.0.0"
    stub = rollout_pb2_grpc.RolloutServiceStub(admin.channel)
    await stub.AbortRollout(rollout_pb2.AbortRolloutRequest(rollout_id=rollout.rollout_id), metadata=admin.md)


async def test_nothing_is_offered_when_no_release_up_to_production_is_good(all_blocked: Fleet) -> None:
    fleet = all_blocked
    user, admin = await fleet.user(), await fleet.user(admin=True)
    device_id, client = await online_device(fleet, user, "1.2.0")

    assert await check(user, device_id) == (False, "", "1.2.0", True)
    expected = "no good release for platform esp32s3: production 1.2.0 is blocked"
    none = await refused(start(user, device_id))
    assert none.code() == grpc.StatusCode.FAILED_PRECONDITION and expected in (none.details() or "")
    none = await refused(create_rollout(admin))
    assert none.code() == grpc.StatusCode.FAILED_PRECONDITION and expected in (none.details() or "")
    assert not client.messages  # nothing was sent to the device
    # An unpromoted release can still be sent on purpose, to one device.
    assert (await start(user, device_id, "1.3.0")).job.to_version == "1.3.0"
