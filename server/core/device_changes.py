"""What follows every change to a device, whichever part of core made it.

The registry (register, delete, block) and the inbound handler (presence, heartbeats, status)
both change devices; each change must correct the ingest path's device cache, record an
online/offline move in the activity log, and reach the watchers. One instance per process is
shared by both, so the cache the inbound handler reads is the one the registry corrects.
"""

from __future__ import annotations

from server.core.activity import ActivityLog
from server.core.device_cache import DeviceCache
from server.core.fleet_events import DeviceEvent, DeviceEventHub, DeviceEventKind, EventFilter, Subscription
from server.core.model import Device
from server.ports.clock import Clock


class DeviceChanges:
    def __init__(self, activity: ActivityLog, clock: Clock, events: DeviceEventHub, *, cache_ttl: float = 5.0) -> None:
        self._activity = activity
        self._clock = clock
        self._events = events
        # Unknown ids are remembered for at most a second: a registration here drops the entry,
        # but one on another replica can't, and its device must not stay unheard for long.
        self.cache = DeviceCache(cache_ttl, negative_ttl=min(cache_ttl, 1.0))

    def emit(self, kind: DeviceEventKind, device: Device) -> None:
        self._events.publish(DeviceEvent(kind, device.device_id, device.owner_id, self._clock.now(), device))

    def subscribe(self, accept: EventFilter[DeviceEvent]) -> Subscription[DeviceEvent]:
        return self._events.subscribe(accept)

    async def presence_changed(self, device: Device, *, online: bool, actor: str, reason: str | None = None) -> None:
        """`device` has just been flipped online or offline in the store (by the caller, which
        won the store's compare-and-set, so each move is recorded once)."""
        self.cache.put(device.device_id, device)
        await self._activity.record_quietly(
            actor, "device.online" if online else "device.offline", device.device_id, reason=reason
        )
        self.emit(DeviceEventKind.ONLINE if online else DeviceEventKind.OFFLINE, device)
