"""The OTA path on the wire: the test publishes jobs as the control plane does (SPEC section 5),
a local HTTP server serves a real image built by firmware_tools, and the simulated device reports
on devices/{id}/ota/status, reboots, and heartbeats the new firmware, or the old one after a rollback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_tools.signing import sign_digest
from firmware_tools.testimage import make_test_image
from simulator.faults import FaultConfig, FaultDice
from simulator.mqtt_device import SimulatedDevice
from tests.integration.simulator.conftest import FirmwareServer, Stack, new_prefix

KEY = Ed25519PrivateKey.generate()
IMAGE = make_test_image("esp32s3", "1.1.0", size=200 * 1024)
SHA = hashlib.sha256(IMAGE).hexdigest()


@pytest.fixture(scope="module")
def image_url(firmware_server: FirmwareServer) -> str:
    firmware_server.files["/fw/1.1.0.bin"] = IMAGE
    return firmware_server.url("/fw/1.1.0.bin")


@pytest.fixture(scope="module")
async def owner(stack: Stack) -> str:
    return (await stack.account())[1]


async def run_ota(
    stack: Stack, token: str, url: str, faults: FaultConfig, *, sign_key: Ed25519PrivateKey = KEY
) -> tuple[SimulatedDevice, list[dict[str, Any]], list[str]]:
    """One device, one job; returns the device, its ota/status reports and the fw of each heartbeat."""
    device_id = new_prefix()
    creds = await stack.device_credentials(token, device_id)
    device = SimulatedDevice(creds, heartbeat=0.2, faults=FaultDice(faults, 3, device_id), public_key=KEY.public_key())
    stop = asyncio.Event()
    statuses: list[dict[str, Any]] = []
    firmware: list[str] = []
    async with stack.backend() as cp:
        await cp.subscribe([(f"devices/{device_id}/ota/status", 1), (f"devices/{device_id}/health", 0)])

        async def listen() -> None:
            async for message in cp.messages:
                assert isinstance(message.payload, bytes)
                body = json.loads(message.payload)
                if message.topic.value.endswith("/ota/status"):
                    statuses.append(body)
                else:
                    firmware.append(body["fw"])

        listener = asyncio.create_task(listen())
        runner = asyncio.create_task(device.run(stop))
        try:
            await asyncio.wait_for(device.connected.wait(), 10)
            job = {"jobId": f"job-{uuid.uuid4().hex[:8]}", "version": "1.1.0", "url": url, "size": len(IMAGE)}
            job |= {"sha256": SHA, "signature": sign_digest(sign_key, SHA)}
            await cp.publish(f"devices/{device_id}/ota", json.dumps(job), qos=1)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while loop.time() < deadline:
                final = [s for s in statuses if s["status"] in ("SUCCESS", "FAILED")]
                if final and firmware and firmware[-1] == device.model.version:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a heartbeat or two after the verdict
        finally:
            stop.set()
            await asyncio.wait_for(runner, 5)
            listener.cancel()
            with pytest.raises((asyncio.CancelledError, aiomqtt.MqttError)):
                await listener
    assert all(s["jobId"] == job["jobId"] for s in statuses)
    return device, statuses, firmware


async def test_successful_update(stack: Stack, owner: str, image_url: str) -> None:
    device, statuses, firmware = await run_ota(stack, owner, image_url, FaultConfig())
    kinds = [s["status"] for s in statuses]
    assert kinds[0] == "STARTED" and kinds[-1] == "SUCCESS" and "IN_PROGRESS" in kinds
    progress = [s["progress"] for s in statuses if "progress" in s]
    assert progress == sorted(progress) and progress[-1] == 100
    assert statuses[-1]["version"] == "1.1.0"
    assert firmware[0] == "1.0.0" and firmware[-1] == "1.1.0"
    assert device.model.running_partition.label == "ota_1" and device.stats.ota_succeeded == 1
    assert device.stats.connects == 2  # rebooted once
    devices = await stack.until(owner, lambda ds: ds[device.device_id].get("firmwareVersion") == "1.1.0")
    assert devices[device.device_id]["firmwareVersion"] == "1.1.0"


@pytest.mark.parametrize(
    ("faults", "error", "rolled_back", "connects"),
    [
        # Self-check: connects on the new image, rejects it, reboots into the old one.
        (FaultConfig(self_check_fail=1.0), "rolled back: self-check failed", True, 3),
        # Crash: panics before connecting; the bootloader boots the old image.
        (FaultConfig(ota_crash=1.0), "rolled back: the new image rebooted", True, 2),
        (FaultConfig(bad_checksum=1.0), "SHA-256", False, 1),
        (FaultConfig(bad_signature=1.0), "signature", False, 1),
        (FaultConfig(failed_download=1.0), "download failed", False, 1),
    ],
    ids=["self-check", "crash", "checksum", "signature", "download"],
)
async def test_failed_updates(
    stack: Stack, owner: str, image_url: str, faults: FaultConfig, error: str, rolled_back: bool, connects: int
) -> None:
    device, statuses, firmware = await run_ota(stack, owner, image_url, faults)
    assert statuses[0]["status"] == "STARTED" and statuses[-1]["status"] == "FAILED"
    assert error in statuses[-1]["error"]
    assert firmware[-1] == "1.0.0" and device.model.version == "1.0.0"
    assert device.stats.ota_failed == 1 and device.stats.ota_rolled_back == int(rolled_back)
    assert device.stats.connects == connects
    assert sum(device.faults.injected.values()) == 1


async def test_slow_download_still_succeeds(stack: Stack, owner: str, image_url: str) -> None:
    faults = FaultConfig(slow_download=1.0, slow_download_bps=400 * 1024)
    device, statuses, firmware = await run_ota(stack, owner, image_url, faults)
    assert statuses[-1]["status"] == "SUCCESS" and firmware[-1] == "1.1.0"
    assert device.faults.injected["slow_download"] == 1


async def test_a_signature_from_another_key_is_refused(stack: Stack, owner: str, image_url: str) -> None:
    _, statuses, firmware = await run_ota(stack, owner, image_url, FaultConfig(), sign_key=Ed25519PrivateKey.generate())
    assert statuses[-1]["status"] == "FAILED" and "signature" in statuses[-1]["error"]
    assert firmware[-1] == "1.0.0"
