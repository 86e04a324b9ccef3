"""Write-behind for heartbeats: many reports, few writes.

A fleet of N devices reporting every few seconds would be N writes per period if each
heartbeat hit the store. Instead `submit` (synchronous, never blocks) keeps only the newest
report per device in memory, and a background task hands the lot to the store as one batched
write (`DeviceStore.apply_heartbeats`) every `interval` seconds, or sooner when `max_batch`
devices are pending. Memory is bounded by the number of distinct devices (plus a hard cap),
not by the message rate. A failed flush keeps its data for the next attempt; `stop()` flushes
what is left, so a clean shutdown loses nothing that was received.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from server.core.model import Heartbeat
from server.core.periodic import PeriodicTask

log = logging.getLogger(__name__)


class HeartbeatSink(Protocol):
    """The one store method the writer needs (DeviceStore satisfies it)."""

    async def apply_heartbeats(self, heartbeats: Sequence[Heartbeat]) -> int: ...


@dataclass
class HeartbeatStats:
    submitted: int = 0
    coalesced: int = 0  # replaced by a newer report of the same device before being written
    dropped: int = 0  # refused because max_pending distinct devices were already waiting
    written: int = 0  # heartbeats handed to the store in successful flushes
    flushes: int = 0
    failures: int = 0


def _merge(old: Heartbeat, new: Heartbeat) -> Heartbeat:
    """The newer report wins; a firmware version only the older one carried is kept."""
    newer, older = (new, old) if new.at >= old.at else (old, new)
    if newer.firmware_version is None and older.firmware_version is not None:
        return replace(newer, firmware_version=older.firmware_version)
    return newer


class HeartbeatWriter:
    def __init__(
        self,
        devices: HeartbeatSink,
        *,
        interval: float = 1.0,
        max_batch: int = 1000,
        max_pending: int = 200_000,
    ) -> None:
        if interval <= 0 or max_batch <= 0 or max_pending < max_batch:
            raise ValueError("need interval > 0, max_batch > 0 and max_pending >= max_batch")
        self._devices = devices
        self.interval = interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: dict[str, Heartbeat] = {}
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        # After a failed flush the runner waits a full interval even when max_batch keeps waking it.
        self._runner = PeriodicTask(
            "heartbeat flush", self._flush_or_raise, interval, wake=self._wake, first_tick_at_start=False, logger=log
        )
        self.stats = HeartbeatStats()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, heartbeat: Heartbeat) -> None:
        """Queue one heartbeat; returns at once. Safe to call before start()."""
        self.stats.submitted += 1
        current = self._pending.get(heartbeat.device_id)
        if current is not None:
            self._pending[heartbeat.device_id] = _merge(current, heartbeat)
            self.stats.coalesced += 1
            return
        if len(self._pending) >= self.max_pending:
            self.stats.dropped += 1
            return
        self._pending[heartbeat.device_id] = heartbeat
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    async def start(self) -> None:
        self._runner.start()

    async def stop(self) -> None:
        """Stop the background flushes (one in flight finishes), then flush everything still
        pending. If the store is down the data that could not be written stays in `pending`
        and is logged."""
        await self._runner.stop()
        await self.flush()
        if self._pending:
            log.error("heartbeat writer stopped with %d heartbeats unwritten", len(self._pending))

    async def flush(self) -> int:
        """Write everything pending now, in batches of max_batch; returns how many were
        written. On failure the unwritten heartbeats go back (older than anything that
        arrived meanwhile) and the error is logged and counted, not raised."""
        written, error = await self._write_pending()
        if error is not None:
            log.warning("heartbeat flush failed (%s); %d pending, will retry", error, len(self._pending))
        return written

    async def _flush_or_raise(self) -> None:
        """The runner's tick: a failure is raised, so the runner logs it (bounded) and backs off."""
        _, error = await self._write_pending()
        if error is not None:
            raise error

    async def _write_pending(self) -> tuple[int, Exception | None]:
        async with self._flush_lock:
            written = 0
            while self._pending:
                batch_ids = list(self._pending)[: self.max_batch]
                batch = [self._pending.pop(device_id) for device_id in batch_ids]
                try:
                    await self._devices.apply_heartbeats(batch)
                except Exception as exc:  # Unavailable, or a bug: either way keep the data
                    self.stats.failures += 1
                    for hb in batch:
                        current = self._pending.get(hb.device_id)
                        self._pending[hb.device_id] = hb if current is None else _merge(hb, current)
                    return written, exc
                written += len(batch)
                self.stats.written += len(batch)
                self.stats.flushes += 1
            return written, None
