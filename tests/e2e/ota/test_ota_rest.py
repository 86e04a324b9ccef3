"""The seed's OTA flow through the real Envoy: check, start, and a paho MQTT 5 device that takes
the job, downloads the firmware over the local store's signed URL, checks its SHA-256 and
Ed25519 signature, reports, reboots into the new version; then the job, the device and the
dashboard say so."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from server.app import ControlPlane
from tests.e2e.devices.conftest import RestFleet
from tests.support.mosquitto import BrokerUnderTest, eventually, mosquitto_broker
from tests.support.releases import ReleaseRoot, release_root
from tests.support.servers import make_settings, running_gateway, running_plane


@pytest.fixture(scope="module")
def ota_rest_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(Path(tmp_path_factory.mktemp("ota-rest-mosquitto"))) as b:
        yield b


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> ReleaseRoot:
    return release_root(tmp_path_factory.mktemp("ota-rest-releases"), ("1.0.0", "1.1.0"), "1.1.0")


@pytest.fixture(scope="module")
async def rest(
    ota_rest_broker: BrokerUnderTest, releases: ReleaseRoot, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RestFleet]:
    tmp = tmp_path_factory.mktemp("ota-rest-plane")
    settings = make_settings(
        tmp,
        MQTT_URL=ota_rest_broker.url,
        MQTT_USER=ota_rest_broker.backend_user,
        MQTT_PASS=ota_rest_broker.backend_password,
        HEARTBEAT_FLUSH_SECONDS="0.05",
        FIRMWARE_DIR=str(releases.root),
        FIRMWARE_PUBLIC_KEY_FILE=str(releases.public_key),
        FIRMWARE_CACHE_SECONDS="0",
    )
    plane = ControlPlane(settings)
    async with running_plane(plane):
        with running_gateway(plane.port, tmp / "envoy") as gateway:
            fleet = RestFleet(f"http://127.0.0.1:{gateway.port}", plane, ota_rest_broker)
            try:
                yield fleet
            finally:
                for c in fleet.clients:
                    await asyncio.to_thread(c.close)


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        assert int(response.headers["Content-Length"]) == len(body)
        return body


async def test_the_seed_ota_flow_end_to_end(rest: RestFleet, releases: ReleaseRoot) -> None:
    token = await rest.user()
    status, reg = await rest.call("POST", "/api/device/register", token, {"deviceId": "ota-lamp", "name": "Lamp"})
    assert status == 200, reg
    device = await rest.connect(reg["mqtt"])
    await device.subscribe("devices/ota-lamp/ota")
    await rest.heartbeat(device, "1.0.0")
    await rest.until(token, "ota-lamp", lambda d: d.get("firmwareVersion") == "1.0.0")

    status, check = await rest.call("GET", "/api/ota/ota-lamp/check", token)
    assert status == 200, check
    assert check["updateAvailable"] is True and check["latestVersion"] == "1.1.0"
    assert check["currentVersion"] == "1.0.0"

    status, started = await rest.call("POST", "/api/ota/ota-lamp/start", token, {})
    assert status == 200, started
    job = started["job"]
    assert (job["status"], job["toVersion"], job["fromVersion"]) == ("STARTED", "1.1.0", "1.0.0")
    status, again = await rest.call("POST", "/api/ota/ota-lamp/start", token, {})
    assert status == 409, again

    # The device: takes the job, downloads, verifies, reports.
    assert await eventually(lambda: bool(device.messages), within=5)
    order = json.loads(device.messages[-1].payload)
    assert set(order) == {"jobId", "version", "url", "size", "sha256", "signature"}
    assert order["jobId"] == job["jobId"] and order["version"] == "1.1.0"
    assert "/releases/v1.1.0/firmware.bin?" in order["url"]
    firmware = await asyncio.to_thread(download, order["url"])
    assert len(firmware) == order["size"] and hashlib.sha256(firmware).hexdigest() == order["sha256"]
    releases.verifier().verify(base64.b64decode(order["signature"]), hashlib.sha256(firmware).digest())
    topic = "devices/ota-lamp/ota/status"
    await device.publish(topic, json.dumps({"jobId": job["jobId"], "status": "STARTED"}))
    await device.publish(topic, json.dumps({"jobId": job["jobId"], "status": "IN_PROGRESS", "progress": 60}))
    await device.publish(topic, json.dumps({"jobId": job["jobId"], "status": "SUCCESS", "progress": 100}))

    async def job_now() -> dict[str, object]:
        status, body = await rest.call("GET", f"/api/ota/ota-lamp/jobs/{job['jobId']}", token)
        assert status == 200, body
        result: dict[str, object] = body["job"]
        return result

    async def job_until(predicate: Callable[[dict[str, object]], bool], within: float = 4.0) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            current = await job_now()
            if predicate(current) or loop.time() > deadline:
                return current
            await asyncio.sleep(0.05)

    current = await job_until(lambda j: j["progress"] == 100)
    assert current["status"] == "IN_PROGRESS"  # installed; confirmed only by the new version

    # Reboot into the new version: the heartbeat confirms it.
    await device.publish("devices/ota-lamp/health", json.dumps({"heap": 20000, "uptime": 2, "fw": "1.1.0"}))
    current = await job_until(lambda j: j["status"] == "SUCCESS")
    assert current["status"] == "SUCCESS"
    updated = await rest.until(token, "ota-lamp", lambda d: d.get("firmwareVersion") == "1.1.0")
    assert updated["firmwareVersion"] == "1.1.0"

    status, dashboard = await rest.call("GET", "/api/dashboard", token)
    assert status == 200, dashboard
    assert dashboard["totals"]["byOtaStatus"] == {"SUCCESS": 1}
    assert dashboard["devices"][0]["otaStatus"] == "SUCCESS"
    assert (await rest.device_list(token))["ota-lamp"]["otaStatus"] == "SUCCESS"
    status, jobs = await rest.call("GET", "/api/ota/ota-lamp/jobs", token)
    assert status == 200 and [j["status"] for j in jobs["jobs"]] == ["SUCCESS"]
    status, check = await rest.call("GET", "/api/ota/ota-lamp/check", token)
    assert check["updateAvailable"] is False and check["latestVersion"] == "1.1.0"


async def test_device_lists_show_each_devices_latest_ota_status(rest: RestFleet) -> None:
    """GET /api/device, /api/device/{id} and /api/admin/devices fill in otaStatus from the
    device's newest job, on every page; a device that never had a job says UNSPECIFIED."""
    token, admin = await rest.user(), await rest.user(admin=True)
    for device_id in ("st-a", "st-b", "st-c"):
        status, reg = await rest.call("POST", "/api/device/register", token, {"deviceId": device_id})
        assert status == 200, reg
        if device_id != "st-c":
            device = await rest.connect(reg["mqtt"])
            await rest.heartbeat(device, "1.0.0")
            await rest.until(token, device_id, lambda d: d.get("firmwareVersion") == "1.0.0" and d.get("online"))
            status, started = await rest.call("POST", f"/api/ota/{device_id}/start", token, {})
            assert status == 200, started
            if device_id == "st-a":  # a failed job, then a newer one: the newer one counts
                report = {"jobId": started["job"]["jobId"], "status": "FAILED", "error": "flash"}
                await device.publish(f"devices/{device_id}/ota/status", json.dumps(report))
                await rest.until(token, device_id, lambda d: d.get("otaStatus") == "FAILED")
                status, started = await rest.call("POST", f"/api/ota/{device_id}/start", token, {})
                assert status == 200, started
    expected = {"st-a": "STARTED", "st-b": "STARTED", "st-c": "OTA_JOB_STATUS_UNSPECIFIED"}

    listed = await rest.device_list(token)
    assert {i: d["otaStatus"] for i, d in listed.items()} == expected
    for device_id, ota_status in expected.items():
        status, one = await rest.call("GET", f"/api/device/{device_id}", token)
        assert status == 200 and one["device"]["otaStatus"] == ota_status, one
    owner = listed["st-a"]["ownerId"]
    fleet = await rest.device_list(admin, f"/api/admin/devices?ownerId={owner}")
    assert {i: d["otaStatus"] for i, d in fleet.items()} == expected

    paged: dict[str, str] = {}
    query = "pageSize=1"
    while True:
        status, page = await rest.call("GET", f"/api/device?{query}", token)
        assert status == 200 and len(page["devices"]) == 1, page
        paged |= {d["deviceId"]: d["otaStatus"] for d in page["devices"]}
        if not page.get("nextPageToken"):
            break
        query = f"pageSize=1&pageToken={page['nextPageToken']}"
    assert paged == expected


async def test_rest_tenants_releases_and_tampered_urls(rest: RestFleet) -> None:
    alice, bob = await rest.user(), await rest.user()
    status, _ = await rest.call("POST", "/api/device/register", alice, {"deviceId": "ota-alice"})
    assert status == 200
    assert (await rest.call("GET", "/api/ota/ota-alice/check", bob))[0] == 404
    assert (await rest.call("POST", "/api/ota/ota-alice/start", bob, {}))[0] == 404
    status, listed = await rest.call("GET", "/api/releases/esp32s3", alice)
    assert status == 200 and [r["version"] for r in listed["releases"]] == ["1.1.0", "1.0.0"]
    assert listed["releases"][0]["production"] is True and isinstance(listed["releases"][0]["size"], int)
    status, one = await rest.call("GET", "/api/releases/esp32s3/1.0.0", alice)
    assert status == 200 and one["release"]["version"] == "1.0.0"
    assert (await rest.call("POST", "/api/releases/esp32s3/1.0.0/block", alice, {}))[0] == 403
    admin = await rest.user(admin=True)
    status, body = await rest.call("POST", "/api/releases/esp32s3/1.1.0/block", admin, {})
    assert status == 400 and "--promote" in body["message"]  # FAILED_PRECONDITION maps to 400
    status, body = await rest.call("POST", "/api/releases/esp32s3/1.0.0/block", admin, {"reason": "bad radio"})
    assert status == 200 and body["release"]["blocked"] is True
    status, body = await rest.call("POST", "/api/releases/esp32s3/1.0.0/block", admin, {"blocked": False})
    assert status == 200 and not body["release"].get("blocked")
    assert rest.plane.firmware_http is not None
    port = rest.plane.firmware_http.port
    forged = f"http://127.0.0.1:{port}/firmware/esp32s3/releases/v1.1.0/firmware.bin?expires=9999999999&sig={'a' * 64}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(download, forged)
    refused.value.close()
    assert refused.value.code == 403
