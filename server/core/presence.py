"""Offline detection for devices that just stop talking (no Last Will reached us).

A periodic sweep asks the store to flip online devices whose last heartbeat is older than the
timeout. The store's conditional update (and its index on online/last_seen) makes the sweep
cheap, idempotent and safe with several replicas sweeping at once: each flipped device is
returned to exactly one caller, which writes its one activity entry and event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from server.core.periodic import PeriodicTask
from server.ports.clock import Clock
from server.ports.store import DeviceStore

log = logging.getLogger("server.presence")

SWEEP_BATCH = 200
MAX_SWEEP_INTERVAL = 5.0
MIN_SWEEP_INTERVAL = 0.05


def sweep_interval(offline_after: float) -> float:
    return max(MIN_SWEEP_INTERVAL, min(offline_after / 3, MAX_SWEEP_INTERVAL))


class OfflineSweeper:
    def __init__(
        self,
        store: DeviceStore,
        clock: Clock,
        offline_after: float,
        on_offline: Callable[[list[str]], Awaitable[None]],
        *,
        interval: float | None = None,
        batch: int = SWEEP_BATCH,
        on_online_count: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._offline_after = offline_after
        self._on_offline = on_offline
        self.interval = sweep_interval(offline_after) if interval is None else interval
        self._batch = batch
        self._on_online_count = on_online_count
        self._runner = PeriodicTask("offline sweep", self.sweep_once, self.interval, logger=log)

    async def sweep_once(self) -> list[str]:
        """Flip every stale device now; returns the ids this call flipped."""
        cutoff = self._clock.now() - timedelta(seconds=self._offline_after)
        flipped: list[str] = []
        while True:
            ids = await self._store.mark_stale_offline(cutoff, self._batch)
            if ids:
                flipped += ids
                await self._on_offline(ids)
            if len(ids) < self._batch:
                break
        if self._on_online_count is not None:
            self._on_online_count((await self._store.summary()).online)
        return flipped

    def start(self) -> None:
        self._runner.start()

    async def stop(self) -> None:
        await self._runner.stop()
