"""What devices report over MQTT, as the bridge hands it over (this is its InboundHandler).

Every message first passes the known/unblocked check, answered from a short-lived cache so the
ingest path doesn't read the store per message. Then: presence flips the device online or
offline, a heartbeat updates its health (write-behind, unless its firmware changed), a status
report records the LED state and may acknowledge a waiting LED command, and OTA traffic goes to
the OTA jobs. The offline sweep's results come through here too.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from server.core.activity import SYSTEM
from server.core.device_changes import DeviceChanges
from server.core.errors import NotFound, PermissionDenied
from server.core.fleet_events import DeviceEventKind
from server.core.model import Device, DeviceHealth, Heartbeat, JsonScalar, LedState
from server.core.registry import not_found
from server.ports.broker import HealthReport, OtaStatusReport, StatusReport
from server.ports.clock import Clock
from server.ports.store import DeviceStore

log = logging.getLogger("server.devices")


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


class CommandAcks(Protocol):
    """Commands waiting for a device's answer (server/core/led.py's LedCommands)."""

    def acknowledge(self, device_id: str, report: StatusReport) -> None: ...


class DeviceInbound:
    def __init__(
        self,
        store: DeviceStore,
        clock: Clock,
        changes: DeviceChanges,
        *,
        heartbeats: HeartbeatQueue | None = None,
        commands: CommandAcks | None = None,
        ota: OtaReports | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._changes = changes
        self._cache = changes.cache
        self._heartbeats = heartbeats
        self._commands = commands
        self._ota = ota

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
            await self._changes.presence_changed(replace(device, online=True), online=True, actor=f"device:{device_id}")
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
        self._changes.emit(DeviceEventKind.HEALTH, seen)
        if self._ota is not None:
            await self._ota.on_health(device, report)

    async def on_status(self, device_id: str, report: StatusReport) -> None:
        device = await self._known(device_id)
        if report.led is not None:
            device = await self._store.set_led(device_id, LedState(report.led), self._clock.now())
            self._cache.put(device_id, device)
        if self._commands is not None:
            self._commands.acknowledge(device_id, report)
        self._changes.emit(DeviceEventKind.STATUS, device)

    async def on_presence(self, device_id: str, online: bool) -> None:
        device = await self._known(device_id)
        if await self._store.set_online(device_id, online, self._clock.now()):
            await self._changes.presence_changed(
                replace(device, online=online), online=online, actor=f"device:{device_id}"
            )

    async def on_ota_status(self, device_id: str, report: OtaStatusReport) -> None:
        device = await self._known(device_id)
        if self._ota is None:
            log.info("OTA status ignored: OTA is not configured", extra={"device_id": device_id})
            return
        await self._ota.on_report(device, report)

    async def on_swept_offline(self, device_ids: list[str]) -> None:
        """The offline sweep flipped these devices (each reported to exactly one replica)."""
        for device_id in device_ids:
            try:
                device = replace(await self._store.get(device_id), online=False)
            except NotFound:
                continue
            await self._changes.presence_changed(device, online=False, actor=SYSTEM, reason="no heartbeat")
