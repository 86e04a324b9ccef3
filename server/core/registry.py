"""The device registry: registration with per-device broker credentials, ownership, reading,
blocking, credential rotation, deletion, and the watch stream of device events.

Tenant isolation lives here: every per-device operation takes the Caller, and a user touching
another user's device gets the very same NotFound as for a device that doesn't exist, so ids
can't be probed. Admins see and act on every device. LED commands (core/led.py) and OTA jobs
(core/ota.py) go through `get` for the same check.

The broker admin is optional at construction: without MQTT configured the store-only
operations work and the rest answer Unavailable.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass, replace

from server.core.activity import SYSTEM, ActivityLog
from server.core.caller import Caller
from server.core.device_changes import DeviceChanges
from server.core.device_rules import hash_credential, validate_device_id, validate_name, validate_platform
from server.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from server.core.fleet_events import DeviceEvent, DeviceEventKind, Subscription
from server.core.model import Device, LedState
from server.ports.broker import BrokerAdmin
from server.ports.clock import Clock
from server.ports.store import DeviceFilter, DeviceStore, Page, PageRequest

log = logging.getLogger("server.devices")

NO_BROKER = "MQTT broker not configured"


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
    # The broker binds a device account to this client id (server/mqtt/dynsec.py).
    client_id: str


@dataclass(frozen=True)
class Registration:
    device: Device
    credentials: IssuedCredentials


def not_found(device_id: str) -> NotFound:
    return NotFound(f"device {device_id} not found")


class DeviceRegistry:
    def __init__(
        self,
        store: DeviceStore,
        activity: ActivityLog,
        clock: Clock,
        changes: DeviceChanges,
        *,
        broker: BrokerAdmin | None = None,
        address: BrokerAddress | None = None,
    ) -> None:
        self._store = store
        self._activity = activity
        self._clock = clock
        self._changes = changes
        self._broker = broker
        self._address = address

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
        self._changes.cache.drop(device_id)
        await self._activity.record(caller.actor, "device.register", device_id, owner=caller.user_id, platform=platform)
        self._changes.emit(DeviceEventKind.REGISTERED, created)
        return Registration(created, self._credentials(address, device_id, password))

    async def delete(self, caller: Caller, device_id: str) -> None:
        device = await self.get(caller, device_id)
        broker, _ = self._need_broker_admin()
        await broker.delete_device_client(device_id)  # first: a device must not outlive its record
        try:
            await self._store.delete(device_id)
        except NotFound:
            raise not_found(device_id) from None
        self._changes.cache.drop(device_id)
        await self._activity.record(caller.actor, "device.delete", device_id, owner=device.owner_id)
        self._changes.emit(DeviceEventKind.DELETED, replace(device, online=False))

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
            await self._changes.presence_changed(updated, online=False, actor=SYSTEM, reason="blocked")
        self._changes.cache.put(device_id, updated)
        if device.blocked != blocked:
            await self._activity.record(caller.actor, "device.block" if blocked else "device.unblock", device_id)
            self._changes.emit(DeviceEventKind.BLOCKED if blocked else DeviceEventKind.UNBLOCKED, updated)
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

        return self._changes.subscribe(accept)

    # ---- helpers -------------------------------------------------------------------------

    def _need_broker_admin(self) -> tuple[BrokerAdmin, BrokerAddress]:
        if self._broker is None or self._address is None:
            raise Unavailable(NO_BROKER)
        return self._broker, self._address

    @staticmethod
    def _credentials(address: BrokerAddress, username: str, password: str) -> IssuedCredentials:
        return IssuedCredentials(username, password, address.host, address.port, address.url, client_id=username)
