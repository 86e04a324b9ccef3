"""One simulated ESP32 on MQTT: the device model of device.py driven by a real aiomqtt client.

It speaks the contract of SPEC section 5 exactly (docs/mqtt.md): Last Will `offline` on its
presence topic, `online` on connect, heartbeats, LED commands answered with the command id,
OTA jobs downloaded over HTTP(S), reported, installed, rebooted into and confirmed or rolled
back. Every device of a fleet shares the one event loop; blocking urllib reads run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from simulator.device import DeviceModel, OtaError, OtaJob
from simulator.faults import Fault, FaultConfig, FaultDice, malformed_payload

log = logging.getLogger("simulator.device")

Action = Literal["reboot", "unclean", "storm", "stop"]
CHUNK = 16 * 1024
BOOT_SECONDS = 0.3  # how long a reboot keeps the device away from the broker


class _Client(aiomqtt.Client):
    """aiomqtt's client with one race closed.

    When paho has bytes to send it asks for a writer; aiomqtt registers it later, with
    call_soon_threadsafe and the socket's fd as it was at the request. If paho closes the
    socket in between (a DISCONNECT queued while its keepalive check closes the connection,
    which a busy loop of hundreds of devices makes common), the late add_writer fails with
    "Bad file descriptor" and asyncio prints a traceback, or worse, watches an fd a newer
    connection reuses. Registering only while the socket is still paho's avoids both.
    """

    def _on_socket_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        def write() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # as aiomqtt does: a failed write means the link is gone
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            if client.socket() is sock and sock.fileno() >= 0:
                self._loop.add_writer(sock.fileno(), write)

        self._loop.call_soon_threadsafe(register)


@dataclass(frozen=True)
class Credentials:
    device_id: str
    password: str
    host: str
    port: int


@dataclass
class DeviceStats:
    connects: int = 0
    heartbeats: int = 0
    malformed_sent: int = 0
    commands_received: int = 0
    commands_acknowledged: int = 0
    ota_received: int = 0
    ota_succeeded: int = 0
    ota_failed: int = 0
    ota_rolled_back: int = 0
    ota_statuses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


class SimulatedDevice:
    def __init__(
        self,
        credentials: Credentials,
        *,
        heartbeat: float = 5.0,
        model: DeviceModel | None = None,
        faults: FaultDice | None = None,
        public_key: Ed25519PublicKey | None = None,
        keepalive: int = 10,
        outage: float = 3.0,
    ) -> None:
        self.credentials = credentials
        self.device_id = credentials.device_id
        self.heartbeat = heartbeat
        self.faults = faults or FaultDice(FaultConfig(), None, credentials.device_id)
        self.model = model or DeviceModel(credentials.device_id, rng=self.faults.rng)
        self.public_key = public_key
        self.keepalive = keepalive
        self.outage = outage  # how long an unclean disconnect (power loss) keeps the device away
        self.stats = DeviceStats()
        self.connected = asyncio.Event()
        self.last_error: str | None = None
        self._action: asyncio.Future[Action] | None = None
        self._storm_left = 0
        self._ota_task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._abandoned = False
        self.errors: list[str] = []  # what went wrong that the report must show

    def topic(self, suffix: str) -> str:
        return f"devices/{self.device_id}/{suffix}"

    # -- requests from outside (the fleet, tests) ---------------------------------------------

    def request(self, action: Action) -> None:
        """Ask the running session to reboot, drop its socket, start a storm, or stop."""
        if self._action is not None and not self._action.done():
            self._action.set_result(action)

    def abandon(self) -> bool:
        """Cut the connection now without DISCONNECT (the fleet's goodbye window has passed).

        The broker then publishes the Last Will, so the control plane still reads the device
        offline at once; a clean DISCONNECT without the goodbye would suppress the will and
        leave it "online" until the sweep. Returns whether there was a connection to cut.
        """
        self._abandoned = True
        client = self._client
        if client is None:
            return False
        self._cut(client)
        return True

    def drop_connection(self) -> None:
        """Force an unclean disconnect now (counted as an injected fault)."""
        self.faults.force(Fault.UNCLEAN_DISCONNECT)
        self.request("unclean")

    # -- the connection loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected (reconnecting with back-off) until `stop` is set."""
        backoff = 0.5
        while not stop.is_set():
            delay = backoff
            try:
                action = await self._session(stop)
                backoff = 0.5
                if action == "storm" or self._storm_left:
                    delay = 0.02 if self._storm_left else BOOT_SECONDS
                elif action == "unclean":
                    delay = self.outage
                else:
                    delay = BOOT_SECONDS
                if action == "stop":
                    return
            except (aiomqtt.MqttError, OSError) as exc:
                self.last_error = str(exc)
                log.debug("%s: connection failed: %s", self.device_id, exc)
                backoff = min(backoff * 2, 10.0)
                delay = backoff * (0.5 + self.faults.rng.random())
            finally:
                self.connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if self.model.pending_verify and self.faults.roll(Fault.OTA_CRASH):
                # The new image panics during start-up: the bootloader rolls back on the next boot.
                log.info("%s: new image crashed before confirming; rolling back", self.device_id)
                self.model.reboot()

    async def _session(self, stop: asyncio.Event) -> Action:
        will = aiomqtt.Will(self.topic("presence"), b"offline", qos=1, retain=True)
        async with _Client(
            self.credentials.host,
            self.credentials.port,
            username=self.device_id,
            password=self.credentials.password,
            # The broker binds a device account to client id == device id (the registration's
            # clientId) and refuses it under any other.
            identifier=self.device_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            keepalive=self.keepalive,
            timeout=10,
        ) as client:
            self._client = client
            try:
                return await self._connected_session(client, stop)
            finally:
                self._client = None

    async def _connected_session(self, client: aiomqtt.Client, stop: asyncio.Event) -> Action:
        if self._abandoned:  # abandoned while the connect was under way
            return await self._drop(client, "unclean")
        self.stats.connects += 1
        self._action = asyncio.get_running_loop().create_future()
        await client.subscribe([(self.topic("command"), 1), (self.topic("ota"), 1)])
        await client.publish(self.topic("presence"), b"online", qos=1, retain=True)
        self.connected.set()
        if self._storm_left > 0:
            self._storm_left -= 1
            return await self._drop(client, "storm")
        await self._after_boot(client)
        listener = asyncio.create_task(self._listen(client))
        others: list[asyncio.Future[Any]] = [
            asyncio.create_task(self._heartbeats(client)),
            asyncio.create_task(stop.wait()),
        ]
        try:
            done, _ = await asyncio.wait([listener, *others, self._action], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in others:
                task.cancel()
        if listener in done:
            listener.result()  # the listener only ends by raising MqttError: the link is gone
        action: Action = self._action.result() if self._action.done() else "stop"
        if action in ("unclean", "storm"):
            return await self._drop(client, action, listener)
        listener.cancel()
        if action == "stop":
            # A clean DISCONNECT suppresses the will, so say goodbye explicitly.
            try:
                await client.publish(self.topic("presence"), b"offline", qos=1, retain=True)
            except aiomqtt.MqttError as exc:
                self.errors.append(f"goodbye failed: {exc}")
                raise
        return action

    async def _drop(self, client: aiomqtt.Client, action: Action, listener: asyncio.Task[None] | None = None) -> Action:
        """Kill the TCP connection without DISCONNECT, as a brown-out would: the broker sends the will."""
        if action == "storm" and self._storm_left == 0 and listener is not None:
            self._storm_left = self.faults.config.storm_reconnects - 1
        self._cut(client)
        waiter = listener or asyncio.create_task(self._listen(client))
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await asyncio.wait_for(waiter, 5)
        return action

    @staticmethod
    def _cut(client: aiomqtt.Client) -> None:
        sock = client._client.socket()
        if isinstance(sock, socket.socket):
            # Only shut down: paho notices EOF and closes (and unregisters) the socket itself.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def _after_boot(self, client: aiomqtt.Client) -> None:
        """First thing after connecting: the self-check of a fresh image, then any OTA verdict."""
        if self.model.pending_verify:
            if self.faults.roll(Fault.SELF_CHECK_FAIL):
                self.model.reject("self-check failed")
                await self._report_outcome(client)
                self.request("reboot")
                return
            self.model.confirm()
        await self._report_outcome(client)

    async def _report_outcome(self, client: aiomqtt.Client) -> None:
        pending = self.model.take_outcome()
        if pending is None:
            return
        job = pending.job
        if pending.outcome == "SUCCESS":
            self.stats.ota_succeeded += 1
            await self._ota_status(client, job.job_id, "SUCCESS", 100, None, version=self.model.version)
        else:
            self.stats.ota_failed += 1
            self.stats.ota_rolled_back += 1
            await self._ota_status(client, job.job_id, "FAILED", None, pending.error, version=self.model.version)

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            now = loop.time()
            self.model.tick(now - last)
            last = now
            if self.faults.roll(Fault.UNCLEAN_DISCONNECT):
                self.request("unclean")
                return
            if self.faults.roll(Fault.RECONNECT_STORM):
                self.request("storm")
                return
            if self.faults.roll(Fault.MALFORMED_PAYLOAD):
                suffix, payload = malformed_payload(self.faults.rng)
                await client.publish(self.topic(suffix), payload, qos=0)
                self.stats.malformed_sent += 1
            if not self.faults.roll(Fault.DROP_HEARTBEAT):
                await client.publish(self.topic("health"), json.dumps(self.model.health()), qos=0)
                self.stats.heartbeats += 1
            await asyncio.sleep(self.heartbeat)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
            if message.topic.matches(self.topic("command")):
                await self._command(client, bytes(payload))
            elif message.topic.matches(self.topic("ota")):
                if self._ota_task is not None and not self._ota_task.done():
                    await self._refuse_busy(client, bytes(payload))
                else:
                    # Its own task: commands keep being answered while a download runs.
                    self._ota_task = asyncio.create_task(self._ota(client, bytes(payload)))

    async def _command(self, client: aiomqtt.Client, payload: bytes) -> None:
        self.stats.commands_received += 1
        try:
            command = json.loads(payload)
            if command.get("cmd", "led") != "led":
                return
            state = self.model.set_led(command["state"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # firmware ignores commands it cannot read
        answer: dict[str, Any] = {"led": state}
        if isinstance(command.get("id"), str):
            answer["id"] = command["id"]
        await client.publish(self.topic("status"), json.dumps(answer), qos=1)
        self.stats.commands_acknowledged += 1

    # -- OTA -----------------------------------------------------------------------------------

    async def _ota_status(
        self,
        client: aiomqtt.Client,
        job_id: str,
        status: str,
        progress: int | None,
        error: str | None,
        version: str | None = None,
    ) -> None:
        report: dict[str, Any] = {"jobId": job_id, "status": status}
        if progress is not None:
            report["progress"] = progress
        if error is not None:
            report["error"] = error[:256]
        if version is not None:
            report["version"] = version
        self.stats.ota_statuses.append(report)
        await client.publish(self.topic("ota/status"), json.dumps(report), qos=1)

    async def _refuse_busy(self, client: aiomqtt.Client, payload: bytes) -> None:
        self.stats.ota_received += 1
        with contextlib.suppress(ValueError, OtaError):
            job = OtaJob.from_payload(json.loads(payload))
            self.stats.ota_failed += 1
            await self._ota_status(client, job.job_id, "FAILED", None, "busy: another update is in progress")

    async def _ota(self, client: aiomqtt.Client, payload: bytes) -> None:
        self.stats.ota_received += 1
        try:
            raw = json.loads(payload)
        except ValueError:
            return  # nothing to answer: without a jobId there is no job
        job_id = raw.get("jobId") if isinstance(raw, dict) else None
        try:
            job = OtaJob.from_payload(raw)
            if self.model.pending is not None:
                raise OtaError("busy", "busy: another update is waiting to be confirmed")
            await self._ota_status(client, job.job_id, "STARTED", 0, None)
            data = await self._download(client, job)
            signature_ok = not self.faults.roll(Fault.BAD_SIGNATURE)
            if not signature_ok:
                if self.public_key is None:
                    raise OtaError("bad_signature", "the Ed25519 signature over the SHA-256 does not verify")
                job = OtaJob(job.job_id, job.version, job.url, job.size, job.sha256, "AAAA" + (job.signature or ""))
            secure_version = self.model.verify_image(job, data, self.public_key)
            self.model.install(job, secure_version)
        except OtaError as exc:
            if isinstance(job_id, str) and job_id:
                self.stats.ota_failed += 1
                await self._ota_status(client, job_id, "FAILED", None, str(exc))
            return
        except aiomqtt.MqttError:
            return  # the connection dropped mid-update; the control plane times the job out
        log.info("%s: installed %s into %s; rebooting", self.device_id, job.version, self.model.next_boot)
        self.model.reboot()
        self.request("reboot")

    async def _download(self, client: aiomqtt.Client, job: OtaJob) -> bytes:
        slow = self.faults.roll(Fault.SLOW_DOWNLOAD)
        broken = self.faults.roll(Fault.FAILED_DOWNLOAD)
        corrupt = self.faults.roll(Fault.BAD_CHECKSUM)
        try:
            response = await asyncio.to_thread(urllib.request.urlopen, job.url, timeout=30)
        except urllib.error.HTTPError as exc:
            with exc:
                raise OtaError("download_failed", f"download failed: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise OtaError("download_failed", f"download failed: {exc}") from None
        data = bytearray()
        reported = 0
        with response:
            while True:
                try:
                    chunk: bytes = await asyncio.to_thread(response.read, CHUNK)
                except OSError as exc:
                    raise OtaError("download_failed", f"download failed: {exc}") from None
                if not chunk:
                    break
                data += chunk
                if len(data) > job.size:
                    raise OtaError("size_mismatch", f"the download is larger than the job's {job.size} bytes")
                if broken and len(data) * 2 >= job.size:
                    raise OtaError("download_failed", f"download failed: connection reset after {len(data)} bytes")
                if slow:
                    await asyncio.sleep(len(chunk) / self.faults.config.slow_download_bps)
                progress = min(99, len(data) * 100 // job.size)
                if progress >= reported + 20:
                    reported = progress
                    await self._ota_status(client, job.job_id, "IN_PROGRESS", progress, None)
        if corrupt and data:
            data[len(data) // 2] ^= 0xFF
        return bytes(data)
