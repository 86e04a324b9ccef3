"""`make demo`: the whole product, scripted, end to end, on this machine.

Starts what `make run` starts (Mosquitto, the control plane, Envoy) with a fresh data
directory, builds and signs two firmware releases with `python -m firmware_tools`, starts a
simulated ESP32 fleet (`simulator`), and walks through the product over its REST API: a user,
their devices coming online with their firmware, an acknowledged LED command, an OTA update
from 1.0.0 to 1.1.0 confirmed by the device's own heartbeat, a staged rollout of 1.1.0 to the
rest of the fleet, an admin blocking a device at the broker, and the activity log. It prints
what happened and exits 0, or names the step that failed and exits 1. Ports and DATA_DIR come
from the environment as for `make run` (DATA_DIR defaults to a temporary directory, so the
demo never touches ./data).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from firmware_tools.signing import load_public_key
from simulator.api import ApiError, RestApi
from simulator.fleet import Fleet, FleetConfig
from tools.stack import Stack, die_with_parent

PLATFORM = "esp32s3"
OLD, NEW = "1.0.0", "1.1.0"
DEVICES = 3


class DemoFailed(RuntimeError):
    pass


def show(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def firmware_tool(*args: str) -> None:
    command = [sys.executable, "-m", "firmware_tools", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DemoFailed(f"firmware_tools {' '.join(args)}: {result.stderr.strip()}")


def build_releases(work: Path, firmware_root: Path) -> Path:
    """Two signed releases in the control plane's local firmware store; 1.0.0 in production."""
    key, public = work / "signing.pem", work / "signing.pub.pem"
    firmware_tool("keygen", "--key", str(key), "--public-key", str(public))
    root = ["--root", str(firmware_root), "--platform", PLATFORM]
    for version in (OLD, NEW):
        image = work / f"app-{version}.bin"
        firmware_tool(
            "make-test-image", "--chip", PLATFORM, "--version", version, "--size", "64KB", "--out", f"{image}"
        )
        firmware_tool("build", str(image), "--version", version, "--key", str(key), *root)
    firmware_tool("promote", OLD, *root)
    firmware_tool("verify", "--public-key", str(public), *root)
    show(f"firmware: built and signed {OLD} and {NEW} for {PLATFORM}; {OLD} is production")
    return public


async def until(what: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise DemoFailed(f"timed out after {within:g}s waiting for: {what}")


class Walk:
    """The scripted steps, each against the REST API as a client would call it."""

    def __init__(self, stack: Stack, admin: tuple[str, str]) -> None:
        self.stack = stack
        self.rest = f"http://127.0.0.1:{stack.rest_port}"
        self.admin = admin
        self.alice = RestApi(self.rest)
        self.ids: list[str] = []

    async def call(self, method: str, path: str, body: Any = None, api: RestApi | None = None) -> Any:
        return await asyncio.to_thread((api or self.alice).call, method, path, body)

    async def user(self) -> tuple[str, str]:
        email, password = "alice@example.com", secrets.token_urlsafe(12)
        await asyncio.to_thread(self.alice.register_user, "alice", email, password)
        await asyncio.to_thread(self.alice.login, email, password)
        show("user: alice registered and logged in (JWT)")
        return email, password

    async def online(self) -> None:
        async def all_online() -> bool:
            listed = (await self.call("GET", "/api/device"))["devices"]
            return len(listed) == DEVICES and all(d["online"] and d["firmwareVersion"] == OLD for d in listed)

        await until("every device online with its firmware", all_online, 20)
        totals = (await self.call("GET", "/api/dashboard"))["totals"]
        show(f"dashboard: {totals['devices']} devices, {totals['online']} online, by firmware {totals['byFirmware']}")

    async def led(self) -> None:
        led = await self.call("POST", f"/api/device/{self.ids[0]}/led", {"state": "ON"})
        if not led["acknowledged"]:
            raise DemoFailed("the LED command was not acknowledged")
        show(f"LED: {self.ids[0]} switched ON, acknowledged by the device (command {led['commandId'][:8]})")

    async def ota(self) -> None:
        device_id = self.ids[0]
        root = ["--root", str(self.stack.data_dir / "firmware"), "--platform", PLATFORM]
        await asyncio.to_thread(firmware_tool, "promote", NEW, *root)

        async def update_offered() -> bool:
            # The control plane caches the catalog for FIRMWARE_CACHE_SECONDS.
            check = await self.call("GET", f"/api/ota/{device_id}/check")
            return bool(check["updateAvailable"] and check["latestVersion"] == NEW)

        await until(f"an update to {NEW} to be offered", update_offered, 15)
        show(f"OTA: {NEW} promoted; the check now says updateAvailable, latest {NEW}")
        job = (await self.call("POST", f"/api/ota/{device_id}/start", {}))["job"]
        show(f"OTA: job {job['jobId'][:8]} sent to {device_id} ({job['fromVersion']} -> {job['toVersion']})")

        async def job_done() -> bool:
            nonlocal job
            job = (await self.call("GET", f"/api/ota/{device_id}/jobs/{job['jobId']}"))["job"]
            return bool(job["status"] in ("SUCCESS", "FAILED"))

        await until("the OTA job to finish", job_done, 60)
        if job["status"] != "SUCCESS":
            raise DemoFailed(f"the OTA job failed: {job['error']}")
        device = (await self.call("GET", f"/api/device/{device_id}"))["device"]
        show(f"OTA: SUCCESS, confirmed by the device's heartbeat; {device_id} now runs {device['firmwareVersion']}")
        totals = (await self.call("GET", "/api/dashboard"))["totals"]
        show(f"dashboard: by firmware {totals['byFirmware']}, by OTA status {totals['byOtaStatus']}")

    async def admin_api(self) -> RestApi:
        root = RestApi(self.rest)
        await asyncio.to_thread(root.login, *self.admin)
        return root

    async def rollout(self, root: RestApi) -> None:
        """The rest of the fleet follows in a staged rollout, one device at a time."""
        body = {"platform": PLATFORM, "version": NEW, "batchSize": 1}
        rollout = (await self.call("POST", "/api/rollouts", body, api=root))["rollout"]
        show(f"rollout: {NEW} to {PLATFORM}, batch size 1, {rollout['counters']['targeted']} devices targeted")

        async def completed() -> bool:
            nonlocal rollout
            rollout = (await self.call("GET", f"/api/rollouts/{rollout['rolloutId']}", api=root))["rollout"]
            return bool(rollout["status"] in ("COMPLETED", "PAUSED", "ABORTED"))

        await until("the rollout to complete", completed, 90)
        counters = rollout["counters"]
        if rollout["status"] != "COMPLETED":
            raise DemoFailed(f"the rollout ended {rollout['status']}: {counters}")
        totals = (await self.call("GET", "/api/dashboard"))["totals"]
        show(f"rollout: COMPLETED, {counters['succeeded']} succeeded; dashboard by firmware {totals['byFirmware']}")

    async def block(self, root: RestApi) -> None:
        device_id = self.ids[-1]
        await self.call("POST", f"/api/admin/device/{device_id}/block", {"blocked": True}, api=root)

        async def cut_off() -> bool:
            d = (await self.call("GET", f"/api/device/{device_id}"))["device"]
            return bool(d["blocked"] and not d["online"])

        await until("the blocked device to be cut off", cut_off, 15)
        try:
            await self.call("POST", f"/api/device/{device_id}/led", {"state": "ON"})
        except ApiError as exc:
            show(f"admin: blocked {device_id}: disconnected at the broker; LED now refused ({exc})")
        else:
            raise DemoFailed("an LED command to a blocked device was accepted")

    async def activity(self, root: RestApi) -> None:
        entries = (await self.call("GET", "/api/admin/activity?pageSize=200", api=root))["entries"]
        actions = Counter(entry["action"] for entry in entries)
        show("activity log: " + ", ".join(f"{name} x{count}" for name, count in sorted(actions.items())))


async def walk(stack: Stack, public_key: Path, admin: tuple[str, str]) -> None:
    steps = Walk(stack, admin)
    email, password = await steps.user()
    key = load_public_key(await asyncio.to_thread(public_key.read_bytes))
    fleet = Fleet(
        FleetConfig(
            api=steps.rest,
            email=email,
            password=password,
            register=True,
            devices=DEVICES,
            prefix="DEMO",
            heartbeat=1.0,
            firmware=OLD,
            state_file=stack.data_dir / "simulator-state.json",
            public_key=key,
            seed=7,
        ),
        say=lambda line: show(f"simulator: {line}"),
    )
    await fleet.start()
    try:
        steps.ids = sorted(fleet.devices)
        if not await fleet.wait_connected(20):
            raise DemoFailed("the simulated devices did not connect")
        await steps.online()
        await steps.led()
        await steps.ota()
        root = await steps.admin_api()
        await steps.rollout(root)
        await steps.block(root)
        await steps.activity(root)
    finally:
        report = await fleet.stop()
        show(
            f"simulator report: {report.heartbeats} heartbeats, {report.commands_acknowledged} commands "
            f"acknowledged, OTA {report.ota_succeeded} succeeded / {report.ota_failed} failed"
        )


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo the way Ctrl-C does: everything cleaned up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    die_with_parent()
    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="fleet-demo-") as tmp:
        work = Path(tmp)
        data_dir = Path(os.environ.get("DATA_DIR") or work / "data")
        admin = ("root@example.com", secrets.token_urlsafe(16))
        public_key = work / "signing.pub.pem"
        env = dict(os.environ, DATA_DIR=str(data_dir), LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"))
        env.update(ADMIN_EMAIL=admin[0], ADMIN_PASSWORD=admin[1], FIRMWARE_PUBLIC_KEY_FILE=str(public_key))
        env.setdefault("COMMAND_TIMEOUT_SECONDS", "5")
        env.setdefault("FIRMWARE_CACHE_SECONDS", "1")
        stack = Stack(env)
        code = 1
        try:
            public_key = build_releases(work, data_dir / "firmware")
            stack.start()
            asyncio.run(walk(stack, public_key, admin))
            show("done: every step behaved as documented")
            code = 0
        except (DemoFailed, ApiError) as exc:
            show(f"FAILED: {exc}")
        except KeyboardInterrupt:
            show("interrupted")
        except (RuntimeError, OSError) as exc:
            show(f"FAILED to start: {exc}")
        finally:
            stack.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
