"""Devices: registration, updates, filters, heartbeats, presence, staleness, summary."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from server.core.errors import AlreadyExists, NotFound
from server.core.model import DeviceHealth, LedState
from server.ports.store import DeviceFilter, PageRequest, Store
from tests.support.factory import Factory


async def test_create_get_delete(store: Store, f: Factory) -> None:
    device = await store.devices.create(f.device(health=f.health(), last_seen=f.tick()))
    assert await store.devices.get(device.device_id) == device
    await store.devices.delete(device.device_id)
    with pytest.raises(NotFound):
        await store.devices.get(device.device_id)
    with pytest.raises(NotFound):
        await store.devices.delete(device.device_id)


async def test_concurrent_duplicate_device_registrations(store: Store, f: Factory) -> None:
    contenders = [f.device(owner_id=f"u-{i}", device_id="esp32-dup") for i in range(25)]
    results = await asyncio.gather(*(store.devices.create(d) for d in contenders), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, AlreadyExists) and e.field == "deviceId" for e in losers)
    assert await store.devices.get("esp32-dup") == winners[0]


async def test_setters(store: Store, f: Factory) -> None:
    d = await store.devices.create(f.device())
    at = f.tick()
    assert (await store.devices.set_blocked(d.device_id, True, at)).blocked
    assert (await store.devices.set_led(d.device_id, LedState.ON, at)).led is LedState.ON
    assert (await store.devices.set_name(d.device_id, "Kitchen", at)).name == "Kitchen"
    updated = await store.devices.set_credentials(d.device_id, "mqtt-user", "new-hash", at)
    assert (updated.broker_username, updated.credential_hash) == ("mqtt-user", "new-hash")
    assert updated.updated_at == at
    assert await store.devices.get(d.device_id) == updated
    with pytest.raises(NotFound):
        await store.devices.set_led("nope", LedState.ON, at)


async def test_filters_and_pages(store: Store, f: Factory) -> None:
    a = await store.devices.create(f.device(owner_id="u-a", online=True, last_seen=f.tick()))
    b = await store.devices.create(f.device(owner_id="u-b", firmware_version="1.1.0"))
    c = await store.devices.create(f.device(owner_id="u-a", blocked=True, platform="esp32c3"))
    page = PageRequest(size=10)

    async def ids(flt: DeviceFilter) -> list[str]:
        return [d.device_id for d in (await store.devices.list(flt, page)).items]

    assert await ids(DeviceFilter()) == [a.device_id, b.device_id, c.device_id]
    assert await ids(DeviceFilter(owner_id="u-a")) == [a.device_id, c.device_id]
    assert await ids(DeviceFilter(online=True)) == [a.device_id]
    assert await ids(DeviceFilter(online=False)) == [b.device_id, c.device_id]
    assert await ids(DeviceFilter(firmware_version="1.1.0")) == [b.device_id]
    assert await ids(DeviceFilter(blocked=True)) == [c.device_id]
    assert await ids(DeviceFilter(platform="esp32c3", owner_id="u-a")) == [c.device_id]
    first = await store.devices.list(DeviceFilter(owner_id="u-a"), PageRequest(size=1))
    assert first.items == [a] and first.next_page_token
    second = await store.devices.list(DeviceFilter(owner_id="u-a"), PageRequest(size=1, token=first.next_page_token))
    assert second.items == [c] and not second.next_page_token


async def test_apply_heartbeats(store: Store, f: Factory) -> None:
    d1 = await store.devices.create(f.device())
    d2 = await store.devices.create(f.device(firmware_version="0.9.0"))
    hb1 = f.heartbeat(d1.device_id, firmware_version="1.2.0", extra={"temp": 40.5, "x": "$y"})
    hb2 = f.heartbeat(d2.device_id, firmware_version=None, rssi=None)
    unknown = f.heartbeat("esp32-unknown")
    assert await store.devices.apply_heartbeats([hb1, hb2, unknown]) == 2
    got1 = await store.devices.get(d1.device_id)
    assert got1.online and got1.last_seen == hb1.at
    assert got1.firmware_version == "1.2.0"
    assert got1.health == DeviceHealth(hb1.heap, hb1.uptime, hb1.rssi, hb1.extra, hb1.at)
    assert got1.updated_at == d1.updated_at  # telemetry is not a record change
    got2 = await store.devices.get(d2.device_id)
    assert got2.firmware_version == "0.9.0"  # not reported: kept
    assert got2.health is not None and got2.health.rssi is None
    assert await store.devices.apply_heartbeats([]) == 0


async def test_older_heartbeat_does_not_overwrite_newer(store: Store, f: Factory) -> None:
    d = await store.devices.create(f.device())
    old = f.heartbeat(d.device_id, heap=1)
    new = f.heartbeat(d.device_id, heap=2)
    await store.devices.apply_heartbeats([new])
    await store.devices.apply_heartbeats([old])
    got = await store.devices.get(d.device_id)
    assert got.last_seen == new.at
    assert got.health is not None and got.health.heap == 2


async def test_heartbeat_does_not_undo_a_later_offline(store: Store, f: Factory) -> None:
    d = await store.devices.create(f.device())
    hb = f.heartbeat(d.device_id)  # buffered by the writer...
    assert await store.devices.set_online(d.device_id, True, f.tick())
    assert await store.devices.set_online(d.device_id, False, f.tick())  # ...then the LWT
    await store.devices.apply_heartbeats([hb])  # the late flush must not resurrect it
    assert not (await store.devices.get(d.device_id)).online
    later = f.heartbeat(d.device_id)
    await store.devices.apply_heartbeats([later])
    assert (await store.devices.get(d.device_id)).online


async def test_set_online_is_conditional(store: Store, f: Factory) -> None:
    d = await store.devices.create(f.device())
    t1, t2, t3 = f.tick(), f.tick(), f.tick()
    assert await store.devices.set_online(d.device_id, True, t2) is True
    assert await store.devices.set_online(d.device_id, True, t3) is False  # no change
    got = await store.devices.get(d.device_id)
    assert got.online and got.last_seen == t2
    assert await store.devices.set_online(d.device_id, False, t1) is False  # stale message
    assert await store.devices.set_online(d.device_id, False, t3) is True
    assert not (await store.devices.get(d.device_id)).online
    with pytest.raises(NotFound):
        await store.devices.set_online("nope", True, t3)


async def test_racing_presence_flips_change_once(store: Store, f: Factory) -> None:
    d = await store.devices.create(f.device())
    at = f.tick()
    results = await asyncio.gather(*(store.devices.set_online(d.device_id, True, at) for _ in range(20)))
    assert results.count(True) == 1


async def test_mark_stale_offline(store: Store, f: Factory) -> None:
    old = await store.devices.create(f.device(online=True, last_seen=f.tick()))
    older = await store.devices.create(f.device(online=True, last_seen=f.tick()))
    cutoff = f.tick()
    fresh = await store.devices.create(f.device(online=True, last_seen=f.tick()))
    await store.devices.create(f.device(online=False, last_seen=f.tick() - timedelta(days=1)))
    first = await store.devices.mark_stale_offline(cutoff, limit=1)
    assert first == [old.device_id]  # the longest silent first
    rest = await store.devices.mark_stale_offline(cutoff, limit=10)
    assert rest == [older.device_id]
    assert await store.devices.mark_stale_offline(cutoff, limit=10) == []
    assert (await store.devices.get(fresh.device_id)).online
    assert not (await store.devices.get(old.device_id)).online


async def test_racing_stale_sweeps_report_each_device_once(store: Store, f: Factory) -> None:
    devices = [await store.devices.create(f.device(online=True, last_seen=f.tick())) for _ in range(30)]
    cutoff = f.tick()
    sweeps = await asyncio.gather(*(store.devices.mark_stale_offline(cutoff, limit=100) for _ in range(4)))
    flipped = [d for sweep in sweeps for d in sweep]
    assert sorted(flipped) == sorted(d.device_id for d in devices)


async def test_summary(store: Store, f: Factory) -> None:
    await store.devices.create(f.device(owner_id="u-a", online=True, last_seen=f.tick()))
    await store.devices.create(f.device(owner_id="u-a", firmware_version="1.1.0", blocked=True))
    await store.devices.create(f.device(owner_id="u-b", firmware_version="", platform="esp32"))
    everyone = await store.devices.summary()
    assert (everyone.devices, everyone.online, everyone.offline, everyone.blocked) == (3, 1, 2, 1)
    assert everyone.by_firmware == {"1.0.0": 1, "1.1.0": 1, "": 1}
    assert everyone.by_platform == {"esp32s3": 2, "esp32": 1}
    mine = await store.devices.summary("u-a")
    assert (mine.devices, mine.online, mine.offline) == (2, 1, 1)
    assert mine.by_firmware == {"1.0.0": 1, "1.1.0": 1}
    empty = await store.devices.summary("u-nobody")
    assert (empty.devices, empty.by_firmware) == (0, {})
