"""Devices: registration with per-device broker credentials, ownership, blocking, LED control,
and what devices report over MQTT (this class is the bridge's InboundHandler).

Tenant isolation lives here: every per-device operation takes the Caller, and a user touching
another user's device gets the very same NotFound as for a device that doesn't exist, so ids
can't be probed. Admins see and act on every device.

The broker (credential provisioning and publishing) is optional at construction: without
MQTT configured the store-only operations work and the rest answer Unavailable.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from server.core.activity import SYSTEM, ActivityLog
from server.core.caller import Caller
from server.core.commands import PendingCommand, PendingCommands
from server.core.device_cache import DeviceCache
from server.core.device_rules import hash_credential, validate_device_id, validate_name, validate_platform
from server.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from server.core.fleet_events import DeviceEvent, DeviceEventHub, DeviceEventKind, Subscription
from server.core.model import Device, DeviceHealth, Heartbeat, JsonScalar, LedState
from server.ports.broker import BrokerAdmin, DevicePublisher, HealthReport, OtaStatusReport, StatusReport
from server.ports.clock import Clock
from server.ports.store import DeviceFilter, DeviceStore, Page, PageRequest

log = logging.getLogger("server.devices")

MAX_COMMAND_TIMEOUT = 30.0
# While a command waits, the store is also polled: with several replicas the device's answer
# may be ingested by another one (shared subscriptions), which records the LED state.
ACK_POLL_SECONDS = 0.25
NO_BROKER = "MQTT broker not configured"


class HeartbeatQueue(Protocol):
    """The write-behind path for heartbeats (server/core/heartbeats.py's HeartbeatWriter)."""

    def submit(self, heartbeat: Heartbeat) -> None:
        """Queue without waiting; the writer batches the store writes."""
        ...


class OtaReports(Protocol):
    """Where OTA traffic goes once the device is known and unblocked (server/core/ota.py)."""

    async def on_report(self, device: Device, report: OtaStatusReport) -> None: ...

    async def on_health(self, device: Device, report: HealthReport) -> None:
        """`device` as it was before this heartbeat."""
        ...


@dataclass(frozen=True)
class BrokerAddress:
    """Where devices connect (MQTT_PUBLIC_URL, else MQTT_URL), as handed out with credentials."""

    host: str
    port: int
    url: str


@dataclass(frozen=True)
class IssuedCredentials:
    username: str
    password: str
    host: str
    port: int
    url: str


@dataclass(frozen=True)
class Registration:
    device: Device
    credentials: IssuedCredentials


@dataclass(frozen=True)
class LedResult:
    command_id: str
    acknowledged: bool
    state: LedState


def not_found(device_id: str) -> NotFound:
    return NotFound(f"device {device_id} not found")


class Devices:
    def __init__(
        self,
        store: DeviceStore,
        activity: ActivityLog,
        clock: Clock,
        events: DeviceEventHub,
        *,
        broker: BrokerAdmin | None = None,
        publisher: DevicePublisher | None = None,
        address: BrokerAddress | None = None,
        heartbeats: HeartbeatQueue | None = None,
        command_timeout: float = 5.0,
        cache_ttl: float = 5.0,
    ) -> None:
        self._store = store
        self._activity = activity
        self._clock = clock
        self._events = events
        self._broker = broker
        self._publisher = publisher
        self._address = address
        self._heartbeats = heartbeats
        self._command_timeout = command_timeout
        self._cache = DeviceCache(cache_ttl, negative_ttl=min(cache_ttl, 1.0))
        self._commands = PendingCommands()
        self._ota: OtaReports | None = None

    def attach_ota(self, ota: OtaReports) -> None:
        """OTA jobs are built on top of Devices (they need its tenant checks), so they attach later."""
        self._ota = ota

    def attach_publisher(self, publisher: DevicePublisher) -> None:
        """The bridge publishes and also calls us (its InboundHandler): it is built after us."""
        self._publisher = publisher

    # ---- reading -------------------------------------------------------------------------

    async def get(self, caller: Caller, device_id: str) -> Device:
        try:
            device = await self._store.get(device_id)
        except NotFound:
            raise not_found(device_id) from None
        if not caller.is_admin and device.owner_id != caller.user_id:
            raise not_found(device_id)
        return device

    async def list(self, caller: Caller, flt: DeviceFilter, page: PageRequest, *, fleet: bool = False) -> Page[Device]:
        """The caller's devices; with `fleet` and an admin caller, every device (flt.owner_id filters)."""
        if not (fleet and caller.is_admin):
            flt = replace(flt, owner_id=caller.user_id)
        return await self._store.list(flt, page)

    # ---- lifecycle -----------------------------------------------------------------------

    async def register(self, caller: Caller, device_id: str, name: str, platform: str = "") -> Registration:
        broker, address = self._need_broker_admin()
        device_id = validate_device_id(device_id)
        # The seed's clients send {deviceId, name}; a missing name defaults to the id.
        name = validate_name(name or device_id)
        platform = validate_platform(platform)
        password = secrets.token_urlsafe(24)
        now = self._clock.now()
        device = Device(
            device_id=device_id,
            owner_id=caller.user_id,
            name=name,
            platform=platform,
            firmware_version="",
            led=LedState.UNKNOWN,
            online=False,
            last_seen=None,
            health=None,
            blocked=False,
            broker_username=device_id,
            credential_hash=hash_credential(password),
            created_at=now,
            updated_at=now,
        )
        try:
            created = await self._store.create(device)
        except AlreadyExists:
            raise AlreadyExists(f"device {device_id} is already registered", field="deviceId") from None
        try:
            await broker.create_device_client(device_id, password)
        except BaseException as exc:
            # Undo the stored device so that a retry of the same id works.
            with contextlib.suppress(Exception):
                await self._store.delete(device_id)
            if isinstance(exc, DomainError) and not isinstance(exc, Unavailable):
                raise  # e.g. a reserved broker name: AlreadyExists
            if not isinstance(exc, Exception):
                raise  # cancellation
            log.warning("device provisioning failed", extra={"device_id": device_id, "error": str(exc)})
            raise Unavailable("MQTT broker unavailable: the device was not registered; retry") from None
        self._cache.drop(device_id)
        await self._activity.record(caller.actor, "device.register", device_id, owner=caller.user_id, platform=platform)
        self._emit(DeviceEventKind.REGISTERED, created)
        return Registration(created, self._credentials(address, device_id, password))

    async def delete(self, caller: Caller, device_id: str) -> None:
        device = await self.get(caller, device_id)
        broker, _ = self._need_broker_admin()
        await broker.delete_device_client(device_id)  # first: a device must not outlive its record
        try:
            await self._store.delete(device_id)
        except NotFound:
            raise not_found(device_id) from None
        self._cache.drop(device_id)
        await self._activity.record(caller.actor, "device.delete", device_id, owner=device.owner_id)
        self._emit(DeviceEventKind.DELETED, replace(device, online=False))

    async def set_blocked(self, caller: Caller, device_id: str, blocked: bool) -> Device:
        """Admin only. Blocking disables the broker account (which disconnects the device);
        unblocking re-enables it. Idempotent: the activity log records only changes."""
        if not caller.is_admin:
            raise PermissionDenied("only an admin may block or unblock a device")
        device = await self.get(caller, device_id)
        broker, _ = self._need_broker_admin()
        try:
            await broker.set_device_enabled(device_id, not blocked)
        except NotFound:
            if not blocked:
                raise FailedPrecondition(
                    "the device has no broker account; issue new credentials (RotateCredentials)"
                ) from None
            # No account: nothing can connect as this device, which is what blocking wants.
        now = self._clock.now()
        updated = await self._store.set_blocked(device_id, blocked, now)
        if blocked and updated.online and await self._store.set_online(device_id, False, now):
            # Disconnected by the broker; its Last Will comes from a blocked device and is dropped.
            updated = replace(updated, online=False)
            await self._transition(updated, online=False, actor=SYSTEM, reason="blocked")
        self._cache.put(device_id, updated)
        if device.blocked != blocked:
            await self._activity.record(caller.actor, "device.block" if blocked else "device.unblock", device_id)
            self._emit(DeviceEventKind.BLOCKED if blocked else DeviceEventKind.UNBLOCKED, updated)
        return updated

    async def rotate_credentials(self, caller: Caller, device_id: str) -> IssuedCredentials:
        device = await self.get(caller, device_id)
        broker, address = self._need_broker_admin()
        password = secrets.token_urlsafe(24)
        # create_device_client re-keys an existing account and repairs a missing one.
        await broker.create_device_client(device_id, password)
        if device.blocked:
            await broker.set_device_enabled(device_id, False)
        await self._store.set_credentials(device_id, device_id, hash_credential(password), self._clock.now())
        await self._activity.record(caller.actor, "device.credentials", device_id)
        return self._credentials(address, device_id, password)

    # ---- control -------------------------------------------------------------------------

    async def set_led(self, caller: Caller, device_id: str, state: LedState, wait: float | None = None) -> LedResult:
        """Publish an LED command and wait up to `wait` s for the device to acknowledge it.
        No acknowledgement is not an error: the result says whether it came."""
        if state not in (LedState.ON, LedState.OFF):
            raise InvalidArgument('state must be "ON" or "OFF"')
        device = await self.get(caller, device_id)
        if self._publisher is None:
            raise Unavailable(NO_BROKER)
        if device.blocked:
            raise FailedPrecondition("device is blocked")
        if not device.online:
            raise FailedPrecondition("device is offline")
        wait = self._command_timeout if wait is None or wait <= 0 else min(wait, MAX_COMMAND_TIMEOUT)
        command_id = uuid.uuid4().hex
        pending = self._commands.expect(device_id, command_id, state)
        try:
            published_at = self._clock.now()
            await self._publisher.publish_command(device_id, {"id": command_id, "cmd": "led", "state": state.value})
            pending.published = True
            acknowledged = await self._await_ack(pending, published_at, wait)
        finally:
            self._commands.forget(pending)
        await self._activity.record_quietly(
            caller.actor, "device.led", device_id, state=state.value, command=command_id, acknowledged=acknowledged
        )
        return LedResult(command_id, acknowledged, state)

    async def _await_ack(self, pending: PendingCommand, published_at: datetime, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return pending.done.is_set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, ACK_POLL_SECONDS)):
                    await pending.done.wait()
            if pending.done.is_set():
                return True
            with contextlib.suppress(DomainError):
                stored = await self._store.get(pending.device_id)
                if stored.led is pending.state and stored.updated_at >= published_at:
                    return True

    # ---- the watch stream ----------------------------------------------------------------

    async def watch(self, caller: Caller, device_id: str = "") -> Subscription[DeviceEvent]:
        """Subscribe now; iterate the result (`async for`) for the events of the devices the
        caller may see, and close it when done."""
        if device_id:
            await self.get(caller, device_id)

        def accept(event: DeviceEvent) -> bool:
            if device_id and event.device_id != device_id:
                return False
            return caller.is_admin or event.owner_id == caller.user_id

        return self._events.subscribe(accept)

    # ---- inbound (the bridge's InboundHandler) -------------------------------------------

    async def _known(self, device_id: str) -> Device:
        """NotFound for an unknown device, PermissionDenied for a blocked one (the bridge
        counts both as dropped)."""
        hit, device = self._cache.get(device_id)
        if not hit:
            try:
                device = await self._store.get(device_id)
            except NotFound:
                device = None
            self._cache.put(device_id, device)
        if device is None:
            raise not_found(device_id)
        if device.blocked:
            raise PermissionDenied(f"device {device_id} is blocked")
        return device

    async def on_health(self, device_id: str, report: HealthReport) -> None:
        device = await self._known(device_id)
        now = self._clock.now()
        if not device.online and await self._store.set_online(device_id, True, now):
            # A heartbeat from a device we hold offline (swept, or it never sent presence).
            await self._transition(replace(device, online=True), online=True, actor=f"device:{device_id}")
        extra: dict[str, JsonScalar] = dict(report.extra)
        heartbeat = Heartbeat(
            device_id=device_id,
            at=now,
            firmware_version=report.firmware_version,
            heap=report.heap,
            uptime=report.uptime,
            rssi=report.rssi,
            extra=extra,
        )
        if self._heartbeats is None or report.firmware_version != device.firmware_version:
            # A firmware change (the first report, an OTA, a rollback) is written through, so the
            # device's record and the OTA job it confirms agree at once. Steady heartbeats go
            # write-behind; a pending older one is then ignored by the store (last_seen rule).
            await self._store.apply_heartbeats([heartbeat])
        else:
            self._heartbeats.submit(heartbeat)
        seen = replace(
            device,
            online=True,
            last_seen=now,
            firmware_version=report.firmware_version,
            health=DeviceHealth(report.heap, report.uptime, report.rssi, extra, now),
        )
        self._cache.put(device_id, seen)
        self._emit(DeviceEventKind.HEALTH, seen)
        if self._ota is not None:
            await self._ota.on_health(device, report)

    async def on_status(self, device_id: str, report: StatusReport) -> None:
        device = await self._known(device_id)
        if report.led is not None:
            device = await self._store.set_led(device_id, LedState(report.led), self._clock.now())
            self._cache.put(device_id, device)
        self._commands.resolve(device_id, report)
        self._emit(DeviceEventKind.STATUS, device)

    async def on_presence(self, device_id: str, online: bool) -> None:
        device = await self._known(device_id)
        if await self._store.set_online(device_id, online, self._clock.now()):
            await self._transition(replace(device, online=online), online=online, actor=f"device:{device_id}")

    async def on_ota_status(self, device_id: str, report: OtaStatusReport) -> None:
        device = await self._known(device_id)
        if self._ota is None:
            log.info("OTA status ignored: OTA is not configured", extra={"device_id": device_id})
            return
        await self._ota.on_report(device, report)

    async def on_swept_offline(self, device_ids: builtins.list[str]) -> None:
        """The offline sweep flipped these devices (each reported to exactly one replica)."""
        for device_id in device_ids:
            try:
                device = replace(await self._store.get(device_id), online=False)
            except NotFound:
                continue
            await self._transition(device, online=False, actor=SYSTEM, reason="no heartbeat")

    # ---- helpers -------------------------------------------------------------------------

    async def _transition(self, device: Device, *, online: bool, actor: str, reason: str | None = None) -> None:
        self._cache.put(device.device_id, device)
        await self._activity.record_quietly(
            actor, "device.online" if online else "device.offline", device.device_id, reason=reason
        )
        self._emit(DeviceEventKind.ONLINE if online else DeviceEventKind.OFFLINE, device)

    def _emit(self, kind: DeviceEventKind, device: Device) -> None:
        self._events.publish(DeviceEvent(kind, device.device_id, device.owner_id, self._clock.now(), device))

    def _need_broker_admin(self) -> tuple[BrokerAdmin, BrokerAddress]:
        if self._broker is None or self._address is None:
            raise Unavailable(NO_BROKER)
        return self._broker, self._address

    @staticmethod
    def _credentials(address: BrokerAddress, username: str, password: str) -> IssuedCredentials:
        return IssuedCredentials(username, password, address.host, address.port, address.url)
