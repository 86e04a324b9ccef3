"""OTA jobs on the real control plane with a real Mosquitto, driven over gRPC and MQTT: the job
state machine from device reports and heartbeats, refusals, tenants, the watch, the timeout
sweep, and S3-presigned job URLs (moto)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest

from iot.v1 import common_pb2, ota_pb2, ota_pb2_grpc, release_pb2, release_pb2_grpc
from server import metrics
from server.app import ControlPlane
from server.core.caller import Caller
from server.core.errors import NotFound
from server.core.model import Role
from tests.integration.devices.conftest import Api, Fleet, new_id, plane_settings
from tests.support.mosquitto import BrokerUnderTest, DeviceClient, eventually, mosquitto_broker
from tests.support.releases import PLATFORM, ReleaseRoot, release_root
from tests.support.s3 import moto_s3_server
from tests.support.servers import running_plane


@pytest.fixture(scope="module")
def ota_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("ota-mosquitto"))) as b:
        yield b


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> ReleaseRoot:
    rr = release_root(tmp_path_factory.mktemp("ota-releases"), ("1.0.0", "1.1.0", "1.2.0"), "1.2.0")
    rr.block("1.1.0", "watchdog resets")
    return rr


def ota_settings(tmp: Path, broker: BrokerUnderTest, releases: ReleaseRoot, **extra: str) -> Any:
    return plane_settings(
        tmp,
        broker,
        # Each plane its own share group: planes on one broker would otherwise split the traffic.
        MQTT_SHARE_GROUP=f"ota-{new_id()}",
        FIRMWARE_DIR=str(releases.root),
        FIRMWARE_PUBLIC_KEY=releases.public_pem,
        FIRMWARE_CACHE_SECONDS="0",
        **extra,
    )


@pytest.fixture(scope="module")
async def ota_plane(
    ota_broker: BrokerUnderTest, releases: ReleaseRoot, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ControlPlane]:
    plane = ControlPlane(ota_settings(tmp_path_factory.mktemp("ota-plane"), ota_broker, releases))
    async with running_plane(plane):
        assert plane.bridge is not None and await plane.bridge.wait_connected(5)
        yield plane


@pytest.fixture
async def fleet(ota_plane: ControlPlane, ota_broker: BrokerUnderTest) -> AsyncIterator[Fleet]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ota_plane.port}") as channel:
        f = Fleet(ota_plane, ota_broker, channel)
        try:
            yield f
        finally:
            await asyncio.to_thread(f.close)


def ota(api: Api) -> ota_pb2_grpc.OtaServiceAsyncStub:
    return ota_pb2_grpc.OtaServiceStub(api.channel)


@dataclass
class OnlineDevice:
    id: str
    client: DeviceClient

    async def report(self, job_id: str, status: str, **extra: Any) -> None:
        await self.client.publish(
            f"devices/{self.id}/ota/status", json.dumps({"jobId": job_id, "status": status, **extra})
        )

    async def heartbeat(self, fw: str, uptime: int = 120) -> None:
        await self.client.publish(f"devices/{self.id}/health", json.dumps({"heap": 20000, "uptime": uptime, "fw": fw}))


async def online_device(fleet: Fleet, api: Api, fw: str = "1.0.0") -> OnlineDevice:
    reg = await api.register()
    device_id = reg.device.device_id
    client = await fleet.device(reg.mqtt.username, reg.mqtt.password)
    await client.subscribe(f"devices/{device_id}/ota")
    device = OnlineDevice(device_id, client)
    await device.heartbeat(fw)
    seen = await api.eventually_device(device_id, lambda d: d.online and d.firmware_version == fw)
    assert seen.firmware_version == fw
    return device


async def start(api: Api, device_id: str, version: str = "") -> common_pb2.OtaJob:
    reply = await ota(api).StartUpdate(
        ota_pb2.StartUpdateRequest(device_id=device_id, version=version), metadata=api.md
    )
    return reply.job


async def job_of(api: Api, device_id: str, job_id: str) -> common_pb2.OtaJob:
    reply = await ota(api).GetOtaJob(ota_pb2.GetOtaJobRequest(device_id=device_id, job_id=job_id), metadata=api.md)
    return reply.job


async def until_job(api: Api, device_id: str, job_id: str, predicate: Any, within: float = 4.0) -> common_pb2.OtaJob:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        job = await job_of(api, device_id, job_id)
        if predicate(job) or loop.time() > deadline:
            return job
        await asyncio.sleep(0.05)


async def test_failed_report_ends_the_job_with_the_devices_error(fleet: Fleet) -> None:
    api = await fleet.user()
    device = await online_device(fleet, api)
    job = await start(api, device.id)
    assert (job.status, job.to_version, job.from_version) == (common_pb2.STARTED, "1.2.0", "1.0.0")
    await device.report(job.job_id, "STARTED")
    await device.report(job.job_id, "IN_PROGRESS", progress=30)
    moving = await until_job(api, device.id, job.job_id, lambda j: j.progress == 30)
    assert moving.status == common_pb2.IN_PROGRESS
    await device.report(job.job_id, "FAILED", error="sha256 mismatch")
    failed = await until_job(api, device.id, job.job_id, lambda j: j.status == common_pb2.FAILED)
    assert (failed.status, failed.error) == (common_pb2.FAILED, "sha256 mismatch")
    # The job has ended, so a new one may start.
    assert (await start(api, device.id)).status == common_pb2.STARTED


async def test_a_device_coming_back_on_the_old_version_fails_the_job(fleet: Fleet) -> None:
    api = await fleet.user()
    device = await online_device(fleet, api)
    job = await start(api, device.id)
    await device.report(job.job_id, "SUCCESS")
    waiting = await until_job(api, device.id, job.job_id, lambda j: j.progress == 100)
    assert waiting.status == common_pb2.IN_PROGRESS  # installed, not yet confirmed
    await device.heartbeat("1.0.0", uptime=100_000)  # sent before the reboot: no verdict yet
    await asyncio.sleep(0.2)  # give a wrong verdict the chance to appear (nothing to poll for)
    assert (await job_of(api, device.id, job.job_id)).status == common_pb2.IN_PROGRESS
    await device.heartbeat("1.0.0", uptime=0)  # rebooted, and rolled back
    failed = await until_job(api, device.id, job.job_id, lambda j: j.status == common_pb2.FAILED)
    assert failed.error == "device came back with version 1.0.0"


async def test_refusals_409_404_blocked_unknown_and_already_running(fleet: Fleet) -> None:
    alice, bob = await fleet.user(), await fleet.user()
    device = await online_device(fleet, alice)
    with pytest.raises(grpc.aio.AioRpcError) as blocked:
        await start(alice, device.id, "1.1.0")
    assert blocked.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "blocked" in (blocked.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await start(alice, device.id, "7.7.7")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as running:
        await start(alice, device.id, "1.0.0")
    assert running.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already running" in (running.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as others:
        await start(bob, device.id)
    assert others.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as check:
        await ota(bob).CheckUpdate(ota_pb2.CheckUpdateRequest(device_id=device.id), metadata=bob.md)
    assert check.value.code() == grpc.StatusCode.NOT_FOUND
    first = await start(alice, device.id)
    with pytest.raises(grpc.aio.AioRpcError) as second:
        await start(alice, device.id)
    assert second.value.code() == grpc.StatusCode.ALREADY_EXISTS and first.job_id in (second.value.details() or "")
    jobs = await ota(alice).ListOtaJobs(ota_pb2.ListOtaJobsRequest(device_id=device.id), metadata=alice.md)
    assert [j.job_id for j in jobs.jobs] == [first.job_id]
    offline = await alice.register()
    with pytest.raises(grpc.aio.AioRpcError) as off:
        await start(alice, offline.device.device_id)
    assert off.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "offline" in (off.value.details() or "")


async def test_a_device_handed_to_start_update_is_still_only_its_owners(fleet: Fleet) -> None:
    # start_update takes the Device its caller read; a caller who isn't its owner (or an admin)
    # is answered as if it did not exist, like every other device call.
    alice, bob = await fleet.user(), await fleet.user()
    device = await online_device(fleet, alice)
    stored = await fleet.plane.store.devices.get(device.id)
    assert fleet.plane.ota is not None
    with pytest.raises(NotFound, match=f"device {device.id} not found"):
        await fleet.plane.ota.start_update(Caller(bob.user_id, Role.USER), stored)
    job = await fleet.plane.ota.start_update(Caller(alice.user_id, Role.USER), stored)
    assert (job.device_id, job.owner_id, job.to_version) == (device.id, alice.user_id, "1.2.0")


async def test_a_device_on_a_blocked_version_is_offered_the_latest_good_one(fleet: Fleet) -> None:
    api = await fleet.user()
    device = await online_device(fleet, api, fw="1.1.0")
    check = await ota(api).CheckUpdate(ota_pb2.CheckUpdateRequest(device_id=device.id), metadata=api.md)
    assert (check.update_available, check.latest_version, check.current_version, check.current_blocked) == (
        True,
        "1.2.0",
        "1.1.0",
        True,
    )
    releases = release_pb2_grpc.ReleaseServiceStub(api.channel)
    listed = await releases.ListReleases(release_pb2.ListReleasesRequest(platform=PLATFORM), metadata=api.md)
    assert [(r.version, r.blocked, r.production) for r in listed.releases] == [
        ("1.2.0", False, True),
        ("1.1.0", True, False),
        ("1.0.0", False, False),
    ]


async def test_release_blocking_is_for_admins_and_never_the_production_version(fleet: Fleet) -> None:
    user, admin = await fleet.user(), await fleet.user(admin=True)
    stub = release_pb2_grpc.ReleaseServiceStub(admin.channel)
    request = release_pb2.SetReleaseBlockedRequest(platform=PLATFORM, version="1.0.0", reason="test")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.SetReleaseBlocked(request, metadata=user.md)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as production:
        await stub.SetReleaseBlocked(
            release_pb2.SetReleaseBlockedRequest(platform=PLATFORM, version="1.2.0"), metadata=admin.md
        )
    assert production.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "python -m firmware_tools block" in (production.value.details() or "")
    blocked = await stub.SetReleaseBlocked(request, metadata=admin.md)  # `blocked` absent: block
    assert blocked.release.blocked and blocked.release.blocked_reason == "test"
    device = await online_device(fleet, user, fw="1.2.0")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await start(user, device.id, "1.0.0")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    unblock = release_pb2.SetReleaseBlockedRequest(platform=PLATFORM, version="1.0.0", blocked=False)
    assert not (await stub.SetReleaseBlocked(unblock, metadata=admin.md)).release.blocked


async def test_illegal_and_foreign_reports_are_dropped_and_counted(fleet: Fleet) -> None:
    api = await fleet.user()
    mine, other = await online_device(fleet, api), await online_device(fleet, api)
    job = await start(api, mine.id)
    plane = fleet.plane
    assert plane.ota is not None
    before = dict(plane.ota.rejected)

    def grew(reason: str) -> bool:
        assert plane.ota is not None
        return plane.ota.rejected.get(reason, 0) > before.get(reason, 0)

    await mine.report("no-such-job", "SUCCESS")
    assert await eventually(lambda: grew("unknown_job"))
    await other.report(job.job_id, "SUCCESS")  # another device's job
    assert await eventually(lambda: grew("wrong_device"))
    await mine.report(job.job_id, "IN_PROGRESS", progress=10)
    await mine.report(job.job_id, "STARTED")  # backwards
    assert await eventually(lambda: grew("illegal_transition"))
    assert metrics.sample("ota_reports_rejected_total", {"reason": "wrong_device"}) >= 1
    still = await job_of(api, mine.id, job.job_id)
    assert (still.status, still.progress) == (common_pb2.IN_PROGRESS, 10)


async def test_watch_delivers_transitions_to_the_owner_only(fleet: Fleet) -> None:
    alice, bob = await fleet.user(), await fleet.user()
    device = await online_device(fleet, alice)
    alice_events: list[ota_pb2.WatchOtaEventsResponse] = []
    bob_events: list[ota_pb2.WatchOtaEventsResponse] = []

    async def collect(api: Api, into: list[ota_pb2.WatchOtaEventsResponse], ready: asyncio.Event) -> None:
        call = ota(api).WatchOtaEvents(ota_pb2.WatchOtaEventsRequest(), metadata=api.md)
        await call.initial_metadata()
        ready.set()
        async for event in call:
            into.append(event)

    ready_a, ready_b = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(collect(alice, alice_events, ready_a)),
        asyncio.create_task(collect(bob, bob_events, ready_b)),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(ready_a.wait(), ready_b.wait()), 5)
        job = await start(alice, device.id)
        await device.report(job.job_id, "IN_PROGRESS", progress=50)
        await device.report(job.job_id, "SUCCESS")
        await device.heartbeat("1.2.0", uptime=1)
        assert await eventually(lambda: any(e.job.status == common_pb2.SUCCESS for e in alice_events))
        mine = [(e.job.status, e.job.progress) for e in alice_events if e.job.job_id == job.job_id]
        assert mine == [
            (common_pb2.STARTED, 0),
            (common_pb2.IN_PROGRESS, 50),
            (common_pb2.IN_PROGRESS, 100),
            (common_pb2.SUCCESS, 100),
        ]
        assert all(e.job.device_id != device.id for e in bob_events)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_timeout_sweep_ends_silent_jobs(
    ota_broker: BrokerUnderTest, releases: ReleaseRoot, tmp_path: Path
) -> None:
    plane = ControlPlane(ota_settings(tmp_path, ota_broker, releases, OTA_JOB_TIMEOUT_SECONDS="1"))
    async with running_plane(plane), grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        assert plane.bridge is not None and await plane.bridge.wait_connected(5)
        fleet = Fleet(plane, ota_broker, channel)
        try:
            api = await fleet.user()
            device = await online_device(fleet, api)
            job = await start(api, device.id)
            ended = await until_job(api, device.id, job.job_id, lambda j: j.status == common_pb2.FAILED, within=5)
            assert (ended.status, ended.error) == (common_pb2.FAILED, "timed out")
        finally:
            await asyncio.to_thread(fleet.close)


async def test_s3_catalog_jobs_carry_presigned_urls(
    ota_broker: BrokerUnderTest, releases: ReleaseRoot, tmp_path: Path
) -> None:
    with moto_s3_server() as s3:
        s3.create_bucket("fw-ota")
        releases.publish("s3://fw-ota", s3.env())
        env = s3.env(bucket="fw-ota")
        env.pop("AWS_DEFAULT_REGION")
        plane = ControlPlane(ota_settings(tmp_path, ota_broker, releases, FIRMWARE_URL_TTL_SECONDS="600", **env))
        async with running_plane(plane), grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            assert plane.firmware_http is None  # S3 serves the downloads
            fleet = Fleet(plane, ota_broker, channel)
            try:
                api = await fleet.user()
                device = await online_device(fleet, api)
                job = await start(api, device.id)
                assert await eventually(lambda: bool(device.client.messages))
                payload = json.loads(device.client.messages[-1].payload)
                assert payload["jobId"] == job.job_id and payload["version"] == "1.2.0"
                query = parse_qs(urlsplit(payload["url"]).query)
                assert urlsplit(payload["url"]).path == "/fw-ota/esp32s3/releases/v1.2.0/firmware.bin"
                assert query["X-Amz-Expires"] == ["600"] and len(query["X-Amz-Signature"][0]) == 64
            finally:
                await asyncio.to_thread(fleet.close)
