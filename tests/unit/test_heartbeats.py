"""The write-behind heartbeat buffer: coalescing, flush triggers, failures, clean stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from server.core.errors import Unavailable
from server.core.heartbeats import HeartbeatWriter
from server.core.model import Heartbeat
from server.ports.store import Store
from tests.support.factory import Factory


class FakeDevices:
    """Only what the writer uses: apply_heartbeats, recording batches; can be made to fail."""

    def __init__(self) -> None:
        self.batches: list[list[Heartbeat]] = []
        self.fail = False

    async def apply_heartbeats(self, heartbeats: Sequence[Heartbeat]) -> int:
        await asyncio.sleep(0)
        if self.fail:
            raise Unavailable("database down")
        self.batches.append(list(heartbeats))
        return len(heartbeats)

    @property
    def written(self) -> list[Heartbeat]:
        return [hb for batch in self.batches for hb in batch]


def writer(store: FakeDevices, **kw: Any) -> HeartbeatWriter:
    return HeartbeatWriter(store, **kw)


async def test_coalesces_to_newest_per_device() -> None:
    f = Factory()
    store = FakeDevices()
    w = writer(store, interval=60)
    first = f.heartbeat("d1", heap=1, firmware_version="1.0.0")
    newest = f.heartbeat("d1", heap=3, firmware_version=None)
    late_old = f.heartbeat("d1", heap=2, at=first.at + timedelta(microseconds=1))
    for hb in (first, newest, late_old, f.heartbeat("d2")):
        w.submit(hb)
    assert w.pending == 2
    assert w.stats.coalesced == 2
    assert await w.flush() == 2
    d1 = next(hb for hb in store.written if hb.device_id == "d1")
    assert d1.heap == 3 and d1.at == newest.at
    assert d1.firmware_version == "1.0.0"  # carried over from an older report


async def test_flushes_on_interval() -> None:
    f = Factory()
    store = FakeDevices()
    w = writer(store, interval=0.05)
    await w.start()
    try:
        w.submit(f.heartbeat("d1"))
        await asyncio.sleep(0.2)
        assert len(store.written) == 1
        assert w.pending == 0
    finally:
        await w.stop()


async def test_flushes_early_when_a_batch_is_full() -> None:
    f = Factory()
    store = FakeDevices()
    w = writer(store, interval=60, max_batch=10)
    await w.start()
    try:
        for i in range(10):
            w.submit(f.heartbeat(f"d{i}"))
        await asyncio.sleep(0.1)
        assert len(store.written) == 10
    finally:
        await w.stop()


async def test_batches_are_split_at_max_batch() -> None:
    f = Factory()
    store = FakeDevices()
    w = writer(store, interval=60, max_batch=7)
    for i in range(20):
        w.submit(f.heartbeat(f"d{i}"))
    assert await w.flush() == 20
    assert [len(b) for b in store.batches] == [7, 7, 6]


async def test_stop_flushes_everything_received() -> None:
    f = Factory()
    store = FakeDevices()
    w = writer(store, interval=60, max_batch=50)
    await w.start()
    sent = [f.heartbeat(f"d{i}") for i in range(120)]
    for hb in sent:
        w.submit(hb)
    await w.stop()
    assert sorted(hb.device_id for hb in store.written) == sorted(hb.device_id for hb in sent)
    assert w.pending == 0


async def test_failure_keeps_data_and_newer_arrivals_win() -> None:
    f = Factory()
    store = FakeDevices()
    w = writer(store, interval=60)
    w.submit(f.heartbeat("d1", heap=1))
    store.fail = True
    assert await w.flush() == 0
    assert w.stats.failures == 1 and w.pending == 1
    newer = f.heartbeat("d1", heap=2)
    w.submit(newer)
    store.fail = False
    assert await w.flush() == 1
    assert store.written == [newer]


async def test_background_retries_after_failure() -> None:
    f = Factory()
    store = FakeDevices()
    store.fail = True
    w = writer(store, interval=0.03)
    await w.start()
    try:
        w.submit(f.heartbeat("d1"))
        await asyncio.sleep(0.1)
        assert w.stats.failures >= 1 and not store.written
        store.fail = False
        await asyncio.sleep(0.2)
        assert len(store.written) == 1
    finally:
        await w.stop()


async def test_a_long_outage_is_logged_once_not_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    f = Factory()
    store = FakeDevices()
    store.fail = True
    w = writer(store, interval=0.01)
    with caplog.at_level(logging.INFO, "server.core.heartbeats"):
        await w.start()
        try:
            w.submit(f.heartbeat("d1"))
            for _ in range(200):
                if w.stats.failures >= 5:
                    break
                await asyncio.sleep(0.01)
            assert w.stats.failures >= 5
            store.fail = False
            for _ in range(200):
                if store.written:
                    break
                await asyncio.sleep(0.01)
        finally:
            await w.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "heartbeat flush failed: database down"
    assert lines[1].startswith("heartbeat flush recovered after ")
    assert len(lines) == 2 and len(store.written) == 1


async def test_memory_is_bounded() -> None:
    f = Factory()
    w = writer(FakeDevices(), interval=60, max_batch=5, max_pending=10)
    for i in range(15):
        w.submit(f.heartbeat(f"d{i}"))
    w.submit(f.heartbeat("d0"))  # a known device still coalesces
    assert w.pending == 10
    assert w.stats.dropped == 5


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        writer(FakeDevices(), interval=0)


async def test_against_the_real_store(store: Store) -> None:
    f = Factory()
    devices = [await store.devices.create(f.device()) for _ in range(50)]
    w = HeartbeatWriter(store.devices, interval=0.05, max_batch=20)
    await w.start()
    last: dict[str, Heartbeat] = {}
    for _ in range(10):
        for d in devices:
            hb = f.heartbeat(d.device_id, heap=f.seq())
            last[d.device_id] = hb
            w.submit(hb)
        await asyncio.sleep(0)
    await w.stop()
    for d in devices:
        got = await store.devices.get(d.device_id)
        assert got.online and got.last_seen == last[d.device_id].at
        assert got.health is not None and got.health.heap == last[d.device_id].heap
