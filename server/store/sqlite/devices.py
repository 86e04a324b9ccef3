"""Devices on SQLite, including the batched heartbeat write."""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from server.core.errors import NotFound
from server.core.model import Device, DeviceHealth, Heartbeat, LedState
from server.ports.store import DeviceFilter, DeviceSummary, Page, PageRequest
from server.store.codec import (
    DEVICE_LIST,
    device_from,
    device_matches,
    device_record,
    dump_json,
    health_from,
    health_record,
    heartbeat_health,
    to_us,
)
from server.store.sqlite.common import Row, equal_where, insert, keyset_page, read_one, update_one
from server.store.sqlite.db import Database

_UNIQUE = {"devices.device_id": "deviceId"}
_MISSING = "device not found"


def health_json(health: DeviceHealth | None) -> str | None:
    return None if health is None else dump_json(health_record(health))


def _health(text: str | None) -> DeviceHealth | None:
    if text is None:
        return None
    h = json.loads(text)
    return health_from(h, h["extra"])  # the extra map is inline in this one JSON text


def _device(row: Row) -> Device:
    return device_from(row, _health(row["health"]))


def _heartbeat_params(hb: Heartbeat) -> tuple[Any, ...]:
    at = to_us(hb.at)
    return (at, health_json(heartbeat_health(hb)), hb.firmware_version, at, hb.device_id, at)


# Newer-wins: a heartbeat older than last_seen changes nothing, and one older than the last
# presence change does not undo an "offline" that arrived after it.
_HEARTBEAT_SQL = """
UPDATE devices SET
    last_seen = ?,
    health = ?,
    firmware_version = coalesce(?, firmware_version),
    online = CASE WHEN presence_at IS NULL OR presence_at <= ? THEN 1 ELSE online END
WHERE device_id = ? AND (last_seen IS NULL OR last_seen <= ?)
"""


class SqliteDevices:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, device: Device) -> Device:
        await insert(self._db, "devices", device_record(device, health_json(device.health)), _UNIQUE, "a device")
        return device

    async def get(self, device_id: str) -> Device:
        return _device(await read_one(self._db, "SELECT * FROM devices WHERE device_id = ?", (device_id,), _MISSING))

    async def delete(self, device_id: str) -> None:
        n = await self._db.write(lambda c: c.execute("DELETE FROM devices WHERE device_id = ?", (device_id,)).rowcount)
        if n == 0:
            raise NotFound(_MISSING)

    async def list(self, flt: DeviceFilter, page: PageRequest) -> Page[Device]:
        where, params = equal_where(device_matches(flt))
        return await keyset_page(self._db, "devices", DEVICE_LIST, where, params, page, _device)

    async def _update(self, device_id: str, assignments: str, params: tuple[Any, ...]) -> Device:
        return _device(await update_one(self._db, "devices", "device_id", device_id, assignments, params, _MISSING))

    async def set_blocked(self, device_id: str, blocked: bool, at: datetime) -> Device:
        return await self._update(device_id, "blocked = ?, updated_at = ?", (int(blocked), to_us(at)))

    async def set_led(self, device_id: str, led: LedState, at: datetime) -> Device:
        return await self._update(device_id, "led = ?, updated_at = ?", (led.value, to_us(at)))

    async def set_name(self, device_id: str, name: str, at: datetime) -> Device:
        return await self._update(device_id, "name = ?, updated_at = ?", (name, to_us(at)))

    async def set_credentials(self, device_id: str, broker_username: str, credential_hash: str, at: datetime) -> Device:
        return await self._update(
            device_id,
            "broker_username = ?, credential_hash = ?, updated_at = ?",
            (broker_username, credential_hash, to_us(at)),
        )

    async def apply_heartbeats(self, heartbeats: Sequence[Heartbeat]) -> int:
        if not heartbeats:
            return 0
        rows = [_heartbeat_params(hb) for hb in heartbeats]
        n = await self._db.write(lambda c: c.executemany(_HEARTBEAT_SQL, rows).rowcount)
        return int(n)

    async def set_online(self, device_id: str, online: bool, at: datetime) -> bool:
        at_us = to_us(at)

        def run(c: sqlite3.Connection) -> bool:
            changed = c.execute(
                """UPDATE devices SET
                       online = ?,
                       presence_at = ?,
                       last_seen = CASE WHEN ? THEN max(coalesce(last_seen, ?), ?)
                                   ELSE last_seen END
                   WHERE device_id = ? AND online != ?
                     AND (presence_at IS NULL OR presence_at <= ?)""",
                (int(online), at_us, int(online), at_us, at_us, device_id, int(online), at_us),
            ).rowcount
            if changed:
                return True
            exists = c.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,))
            if exists.fetchone() is None:
                raise NotFound(_MISSING)
            return False

        return await self._db.write(run)

    async def mark_stale_offline(self, cutoff: datetime, limit: int) -> builtins.list[str]:
        if limit <= 0:
            return []
        cutoff_us = to_us(cutoff)

        def run(c: sqlite3.Connection) -> builtins.list[str]:
            rows = c.execute(
                """UPDATE devices SET online = 0
                   WHERE device_id IN (
                       SELECT device_id FROM devices
                       WHERE online = 1 AND last_seen < ? ORDER BY last_seen LIMIT ?)
                   RETURNING device_id""",
                (cutoff_us, limit),
            ).fetchall()
            return sorted(r[0] for r in rows)

        return await self._db.write(run)

    async def summary(self, owner_id: str | None = None) -> DeviceSummary:
        where, params = ("WHERE owner_id = ?", (owner_id,)) if owner_id is not None else ("", ())

        def run(c: sqlite3.Connection) -> DeviceSummary:
            totals = "SELECT count(*), coalesce(sum(online), 0), coalesce(sum(blocked), 0)"
            sql = f"{totals} FROM devices {where}"
            total, online, blocked = c.execute(sql, params).fetchone()
            by_fw = c.execute(
                f"SELECT firmware_version, count(*) FROM devices {where} "  # noqa: S608
                "GROUP BY firmware_version",
                params,
            ).fetchall()
            by_platform = c.execute(
                f"SELECT platform, count(*) FROM devices {where} GROUP BY platform",  # noqa: S608
                params,
            ).fetchall()
            return DeviceSummary(
                devices=total,
                online=online,
                offline=total - online,
                blocked=blocked,
                by_firmware={r[0]: r[1] for r in by_fw},
                by_platform={r[0]: r[1] for r in by_platform},
            )

        return await self._db.read(run)
