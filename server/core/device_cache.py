"""A short-lived cache of devices for the MQTT ingest path (one store read per device per few
seconds instead of one per message)."""

from __future__ import annotations

import time

from server.core.model import Device


class DeviceCache:
    """Recently read devices, so ingest doesn't read the store per message. Short-lived: it
    only decides whether to accept a message; the broker is what cuts off blocked devices."""

    def __init__(self, ttl: float, negative_ttl: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._entries: dict[str, tuple[Device | None, float]] = {}

    def get(self, device_id: str) -> tuple[bool, Device | None]:
        entry = self._entries.get(device_id)
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, device_id: str, device: Device | None) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
        ttl = self._ttl if device is not None else self._negative_ttl
        self._entries[device_id] = (device, time.monotonic() + ttl)

    def drop(self, device_id: str) -> None:
        self._entries.pop(device_id, None)
