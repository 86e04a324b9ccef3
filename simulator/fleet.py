"""A fleet of simulated devices: provisioning through REST, a state file, one event loop.

Library use (the demo script, tests):

    fleet = Fleet(FleetConfig(api="http://127.0.0.1:3000", email=..., password=..., devices=5))
    await fleet.start()          # log in, register/reuse credentials, connect (jittered)
    ...                          # fleet.devices[...] are SimulatedDevice objects
    report = await fleet.stop()  # clean goodbye, then the Report

Or pass `credentials=[Credentials(...)]` to skip REST entirely (a broker with provisioned accounts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from simulator.api import ApiError, RestApi
from simulator.device import DeviceModel
from simulator.faults import FaultConfig, FaultDice
from simulator.mqtt_device import Credentials, SimulatedDevice
from simulator.report import Report

DEFAULT_STATE_FILE = Path("data/simulator/state.json")


class FleetError(RuntimeError):
    """Provisioning failed in a way a flag can fix; the message says which."""


@dataclass
class FleetConfig:
    api: str = "http://127.0.0.1:3000"
    email: str | None = None
    password: str | None = None
    username: str | None = None
    register_user: bool = False
    register: bool = False
    devices: int = 10
    prefix: str = "SIM"
    heartbeat: float = 5.0
    firmware: str = "1.0.0"
    state_file: Path | None = DEFAULT_STATE_FILE
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None
    concurrency: int = 20
    ramp: float | None = None  # seconds over which connects are spread; default min(heartbeat, 5)
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    public_key: Ed25519PublicKey | None = None
    outage: float = 3.0
    keepalive: int = 10

    def device_ids(self) -> list[str]:
        width = max(4, len(str(self.devices)))
        return [f"{self.prefix}-{i:0{width}d}" for i in range(1, self.devices + 1)]


class StateFile:
    """Issued passwords, per API URL and device id, so re-runs reuse them (mode 0600)."""

    def __init__(self, path: Path | None, api: str) -> None:
        self.path = path
        self.api = api
        self.data: dict[str, Any] = {"version": 1, "apis": {}}
        if path is not None and path.exists():
            with contextlib.suppress(ValueError, OSError):
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict) and isinstance(loaded.get("apis"), dict):
                    self.data = loaded

    def get(self, device_id: str) -> dict[str, Any] | None:
        entry = self.data["apis"].get(self.api, {}).get(device_id)
        return entry if isinstance(entry, dict) and entry.get("password") else None

    def put(self, device_id: str, mqtt: dict[str, Any]) -> None:
        keep = {k: mqtt[k] for k in ("username", "password", "host", "port") if k in mqtt}
        self.data["apis"].setdefault(self.api, {})[device_id] = keep

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.data, handle, indent=2, sort_keys=True)
        tmp.replace(self.path)


class Fleet:
    def __init__(
        self,
        config: FleetConfig,
        *,
        credentials: list[Credentials] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self._credentials = credentials
        self.say = say or (lambda _m: None)
        self.devices: dict[str, SimulatedDevice] = {}
        self._stop = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], str] = {}  # -> device id
        self._started_at = 0.0
        self._rng = random.Random(config.seed)  # noqa: S311 (jitter, not cryptography)

    # -- provisioning --------------------------------------------------------------------------

    def _login(self) -> RestApi:
        c = self.config
        api = RestApi(c.api)
        if not c.email or not c.password:
            raise FleetError("an account is needed: pass --email and --password (or SIMULATOR_EMAIL/_PASSWORD)")
        if c.register_user:
            username = c.username or c.email.split("@", 1)[0]
            try:
                created = api.register_user(username, c.email, c.password)
            except ApiError as exc:
                # The default username is the email's local part, which the server may refuse
                # (e.g. "qa" is shorter than 3): name the flag that fixes it.
                hint = " (pass --username to choose a valid username)" if exc.status == 400 else ""
                raise FleetError(f"registering user {username!r} failed: {exc}{hint}") from None
            if created:
                self.say(f"registered user {username} <{c.email}>")
        try:
            api.login(c.email, c.password)
        except ApiError as exc:
            hint = " (pass --register-user to create the account)" if exc.status == 401 else ""
            raise FleetError(f"login as {c.email} failed: {exc}{hint}") from None
        return api

    def _credentials_for(self, api: RestApi, state: StateFile, device_id: str) -> Credentials:
        entry = state.get(device_id)
        if entry is None:
            mqtt = api.register_device(device_id, f"Simulated {device_id}") if self.config.register else None
            if mqtt is None:
                # Known to the control plane but not to this state file: issue a fresh password.
                try:
                    mqtt = api.rotate_credentials(device_id)
                except ApiError as exc:
                    hint = " (pass --register to create it)" if exc.status == 404 else ""
                    raise FleetError(f"device {device_id}: {exc}{hint}") from None
            state.put(device_id, mqtt)
            entry = state.get(device_id)
            assert entry is not None
        host = self.config.mqtt_host or str(entry.get("host") or "127.0.0.1")
        port = self.config.mqtt_port or int(entry.get("port") or 1883)
        return Credentials(device_id, str(entry["password"]), host, port)

    def provision(self) -> list[Credentials]:
        """Blocking: log in, then register / reuse / rotate every device's credentials."""
        api = self._login()
        state = StateFile(self.config.state_file, self.config.api)
        creds: list[Credentials] = []
        try:
            for device_id in self.config.device_ids():
                creds.append(self._credentials_for(api, state, device_id))
        finally:
            state.save()  # keep what was issued even if a later device failed
        return creds

    def forget(self, device_id: str) -> None:
        """Drop a device's stored password (e.g. after it was rotated elsewhere)."""
        state = StateFile(self.config.state_file, self.config.api)
        state.data["apis"].get(self.config.api, {}).pop(device_id, None)
        state.save()

    # -- running -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Provision (unless credentials were given), then connect every device, jittered."""
        c = self.config
        creds = self._credentials if self._credentials is not None else await asyncio.to_thread(self.provision)
        self._stop.clear()
        self._started_at = time.monotonic()
        for cred in creds:
            dice = FaultDice(c.faults, c.seed, cred.device_id)
            model = DeviceModel(cred.device_id, initial_version=c.firmware, rng=dice.rng)
            self.devices[cred.device_id] = SimulatedDevice(
                cred,
                heartbeat=c.heartbeat,
                model=model,
                faults=dice,
                public_key=c.public_key,
                keepalive=c.keepalive,
                outage=c.outage,
            )
        ramp = c.ramp if c.ramp is not None else min(c.heartbeat, 5.0)
        gate = asyncio.Semaphore(max(1, c.concurrency))
        for device in self.devices.values():
            delay = self._rng.uniform(0, ramp) if ramp > 0 else 0.0
            self._tasks[asyncio.create_task(self._run_one(device, delay, gate))] = device.device_id

    async def _run_one(self, device: SimulatedDevice, delay: float, gate: asyncio.Semaphore) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        if self._stop.is_set():
            return
        # Bounded concurrency for the connect itself: a thundering herd of CONNECTs is a fault
        # to inject on purpose (--fault-reconnect-storm), not the default way to start.
        async with gate:
            waiter = asyncio.create_task(device.connected.wait())
            runner = asyncio.create_task(device.run(self._stop))
            await asyncio.wait([waiter, runner], timeout=10, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        await runner

    async def wait_connected(self, within: float = 10.0) -> bool:
        """True once every device is connected (for tests and the demo)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.devices and all(d.connected.is_set() for d in self.devices.values()):
                return True
            await asyncio.sleep(0.05)
        return False

    async def run(self, duration: float | None, progress_every: float = 5.0) -> Report:
        """Run until `duration` passes (None: until cancelled), saying progress now and then."""
        loop = asyncio.get_running_loop()
        end = None if duration is None else loop.time() + duration
        try:
            while end is None or loop.time() < end:
                step = progress_every if end is None else min(progress_every, end - loop.time())
                await asyncio.sleep(max(0.0, step))
                self.say(self.progress_line())
        finally:
            report = await self.stop()
        return report

    def progress_line(self) -> str:
        r = self.report()
        return (
            f"{r.duration_seconds:6.1f}s  connected {r.connected}/{r.devices}  heartbeats {r.heartbeats}  "
            f"commands {r.commands_acknowledged}/{r.commands_received}  ota ok {r.ota_succeeded} "
            f"failed {r.ota_failed}  reconnects {r.reconnects}  faults {sum(r.faults.values())}"
        )

    def report(self) -> Report:
        elapsed = time.monotonic() - self._started_at if self._started_at else 0.0
        return Report.of(self.devices.values(), duration=elapsed, seed=self.config.seed)

    async def stop(self, within: float | None = None) -> Report:
        """Disconnect every device cleanly (each says `offline` first) and return the report.

        `within` (default: 5 s plus 1 s per 200 devices, since one event loop says every
        goodbye) bounds the goodbyes; a device still busy then is cut off without DISCONNECT,
        so the broker publishes its Last Will and it still reads offline. The report is taken
        after all of this and names every device that did not say goodbye or failed.
        """
        if within is None:
            within = 5.0 + len(self.devices) / 200
        self._stop.set()
        tasks = dict(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=within)
            for task in pending:
                device = self.devices[tasks[task]]
                if device.abandon():
                    device.errors.append(f"no goodbye within {within:g} s: connection cut, the broker sends its will")
            if pending:
                # Cut off, each ends within a moment; cancelling is for what is wedged even so.
                _, wedged = await asyncio.wait(pending, timeout=5.0)
                for task in wedged:
                    task.cancel()
            for task, outcome in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
                if isinstance(outcome, Exception):
                    # A bug in the simulator, not a fault it injected: it belongs in the report.
                    self.devices[tasks[task]].errors.append(f"crashed: {type(outcome).__name__}: {outcome}")
        self._tasks.clear()
        return self.report()
