"""An in-process hub of device events (online, offline, health, status, lifecycle).

Core publishes; the watch stream (DeviceService.WatchDeviceEvents) subscribes. Publishing never
waits: each subscriber has a bounded queue, and a subscriber that falls behind loses its oldest
events rather than slowing the MQTT ingest path or growing memory without bound. A watcher
that needs every event must keep up; one that needs the current state reads it (GetDevice).

The hub sees the events this replica handles. With several replicas sharing device traffic
(MQTT shared subscriptions), a watcher sees the share of telemetry its replica ingests plus the
API calls it served; docs/devices.md says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from server.core.model import Device

DEFAULT_QUEUE_SIZE = 256


class DeviceEventKind(StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    HEALTH = "HEALTH"
    STATUS = "STATUS"
    REGISTERED = "REGISTERED"
    DELETED = "DELETED"
    BLOCKED = "BLOCKED"
    UNBLOCKED = "UNBLOCKED"


@dataclass(frozen=True)
class DeviceEvent:
    kind: DeviceEventKind
    device_id: str
    owner_id: str
    time: datetime
    device: Device | None = None  # the device as known when the event happened (None if gone)


E = TypeVar("E")
EventFilter = Callable[[E], bool]


class _Closed:
    """Queued to a subscriber to end its iteration (hub closed)."""


_CLOSED = _Closed()


class Subscription(Generic[E]):
    def __init__(self, hub: EventHub[E], accept: EventFilter[E], size: int) -> None:
        self._hub = hub
        self.accept = accept
        self.queue: asyncio.Queue[E | _Closed] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.ended = False

    def offer(self, item: E) -> bool:
        """Enqueue without waiting; drop the oldest queued event when full. True if one was dropped."""
        dropped = False
        if self.queue.full():
            try:
                self.queue.get_nowait()
                self.dropped += 1
                dropped = True
            except asyncio.QueueEmpty:  # pragma: no cover - single-threaded: full means non-empty
                pass
        self.queue.put_nowait(item)
        return dropped

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[E]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[E]:
        try:
            while not (self.ended and self.queue.empty()):
                item = await self.queue.get()
                if isinstance(item, _Closed):
                    return
                yield item
        finally:
            self._hub.unsubscribe(self)

    def end(self) -> None:
        """No more events: iteration finishes after the ones already queued."""
        self.ended = True
        if not self.queue.full():
            self.queue.put_nowait(_CLOSED)  # wakes a waiting reader; a full queue has none


class EventHub(Generic[E]):
    """Events of one kind (E), fanned out to subscribers; OTA events reuse it (core/ota_events.py)."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE, on_drop: Callable[[], None] | None = None) -> None:
        self._queue_size = queue_size
        self._on_drop = on_drop
        self._subscribers: set[Subscription[E]] = set()
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, accept: EventFilter[E]) -> Subscription[E]:
        """Events for which `accept` is true, from now on; iterate the result (`async for`).
        The subscription ends when the iteration stops or the hub closes."""
        sub: Subscription[E] = Subscription(self, accept, self._queue_size)
        if self._closed:
            sub.end()
        else:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription[E]) -> None:
        self._subscribers.discard(sub)

    def publish(self, event: E) -> None:
        for sub in list(self._subscribers):
            if sub.accept(event) and sub.offer(event) and self._on_drop is not None:
                self._on_drop()

    def close(self) -> None:
        """End every subscription (shutdown: lets watch streams finish instead of being cut)."""
        self._closed = True
        for sub in list(self._subscribers):
            sub.end()
        self._subscribers.clear()


class DeviceEventHub(EventHub[DeviceEvent]):
    pass
