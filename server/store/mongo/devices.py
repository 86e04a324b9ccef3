"""Devices on MongoDB, including the batched heartbeat write."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

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
    load_extra,
    to_us,
)
from server.store.mongo.common import Collection, Doc, Names, find_one, keyset_page, set_fields, translated

UNIQUE = {"_id": "deviceId", "_id_": "deviceId"}
NAMES = Names("device_id", owner_id="owner")
_MISSING = "device not found"
# Heartbeat batches go to the server in bulk_writes of at most this many updates: each stays
# far below socketTimeoutMS even on a slow server (SecantusDB's bulk cost grows faster than
# linearly with its size), at a negligible cost in round trips on MongoDB.
BULK_CHUNK = 100


def _health_doc(h: DeviceHealth | None) -> Doc | None:
    # extra is JSON text inside the document: a device's keys may hold '.' or '$'
    return None if h is None else {**health_record(h), "extra": dump_json(h.extra)}


def _health(d: Doc | None) -> DeviceHealth | None:
    return None if d is None else health_from(d, load_extra(d["extra"]))


def _device(d: Doc) -> Device:
    return device_from(NAMES.of(d), _health(d["health"]))


def _heartbeat_op(hb: Heartbeat) -> UpdateOne:
    """Newer-wins, as on SQLite. An update pipeline, so the online flag can depend on the
    stored presenceAt in the same atomic write; every value is $literal so that a device's
    string starting with '$' is never read as a field path."""
    at = to_us(hb.at)
    health = _health_doc(heartbeat_health(hb))
    fw: Any = {"$literal": hb.firmware_version}
    if hb.firmware_version is None:
        fw = "$firmwareVersion"  # keep the stored one
    newer_than_presence = {"$lte": [{"$ifNull": ["$presenceAt", at]}, at]}
    return UpdateOne(
        {"_id": hb.device_id, "$or": [{"lastSeen": None}, {"lastSeen": {"$lte": at}}]},
        [
            {
                "$set": {
                    "lastSeen": {"$literal": at},
                    "health": {"$literal": health},
                    "firmwareVersion": fw,
                    "online": {"$cond": [newer_than_presence, True, "$online"]},
                }
            }
        ],
    )


class MongoDevices:
    def __init__(self, coll: Collection) -> None:
        self._c = coll

    async def create(self, device: Device) -> Device:
        with translated("a device", UNIQUE):
            await self._c.insert_one(NAMES.doc(device_record(device, _health_doc(device.health))))
        return device

    async def get(self, device_id: str) -> Device:
        return _device(await find_one(self._c, {"_id": device_id}, _MISSING))

    async def delete(self, device_id: str) -> None:
        with translated():
            result = await self._c.delete_one({"_id": device_id})
        if result.deleted_count == 0:
            raise NotFound(_MISSING)

    async def list(self, flt: DeviceFilter, page: PageRequest) -> Page[Device]:
        query = NAMES.doc(device_matches(flt))
        return await keyset_page(self._c, NAMES, DEVICE_LIST, query, page, _device)

    async def _set(self, device_id: str, fields: dict[str, Any]) -> Device:
        return _device(await set_fields(self._c, device_id, fields, _MISSING))

    async def set_blocked(self, device_id: str, blocked: bool, at: datetime) -> Device:
        return await self._set(device_id, {"blocked": blocked, "updatedAt": to_us(at)})

    async def set_led(self, device_id: str, led: LedState, at: datetime) -> Device:
        return await self._set(device_id, {"led": led.value, "updatedAt": to_us(at)})

    async def set_name(self, device_id: str, name: str, at: datetime) -> Device:
        return await self._set(device_id, {"name": name, "updatedAt": to_us(at)})

    async def set_credentials(self, device_id: str, broker_username: str, credential_hash: str, at: datetime) -> Device:
        return await self._set(
            device_id,
            {
                "brokerUsername": broker_username,
                "credentialHash": credential_hash,
                "updatedAt": to_us(at),
            },
        )

    async def apply_heartbeats(self, heartbeats: Sequence[Heartbeat]) -> int:
        if not heartbeats:
            return 0
        ops = [_heartbeat_op(hb) for hb in heartbeats]
        matched = 0
        with translated():
            for i in range(0, len(ops), BULK_CHUNK):
                result = await self._c.bulk_write(ops[i : i + BULK_CHUNK], ordered=False)
                matched += result.matched_count
        return matched

    async def set_online(self, device_id: str, online: bool, at: datetime) -> bool:
        at_us = to_us(at)
        update: Doc = {"$set": {"online": online, "presenceAt": at_us}}
        if online:
            update["$max"] = {"lastSeen": at_us}  # null or missing counts as older
        with translated():
            result = await self._c.update_one(
                {
                    "_id": device_id,
                    "online": {"$ne": online},
                    "$or": [{"presenceAt": None}, {"presenceAt": {"$lte": at_us}}],
                },
                update,
            )
            if result.modified_count:
                return True
            if await self._c.find_one({"_id": device_id}, {"_id": 1}) is None:
                raise NotFound(_MISSING)
        return False

    async def mark_stale_offline(self, cutoff: datetime, limit: int) -> builtins.list[str]:
        if limit <= 0:
            return []
        stale: Doc = {"online": True, "lastSeen": {"$lt": to_us(cutoff)}}
        with translated():
            candidates = await self._c.find(stale, {"_id": 1}).sort("lastSeen", 1).limit(limit).to_list()

            # Each flip is its own conditional update, so when replicas race over the same
            # candidates exactly one of them sees modified_count == 1 for a given device.
            async def flip(device_id: str) -> str | None:
                result = await self._c.update_one({"_id": device_id, **stale}, {"$set": {"online": False}})
                return device_id if result.modified_count else None

            flipped = await asyncio.gather(*(flip(d["_id"]) for d in candidates))
        return sorted(d for d in flipped if d is not None)

    async def summary(self, owner_id: str | None = None) -> DeviceSummary:
        match: Doc = {} if owner_id is None else {"owner": owner_id}
        pipeline: list[Doc] = [
            {"$match": match},
            {
                "$group": {
                    "_id": {"fw": "$firmwareVersion", "platform": "$platform"},
                    "n": {"$sum": 1},
                    "online": {"$sum": {"$cond": ["$online", 1, 0]}},
                    "blocked": {"$sum": {"$cond": ["$blocked", 1, 0]}},
                }
            },
        ]
        with translated():
            rows = await (await self._c.aggregate(pipeline)).to_list()
        total = online = blocked = 0
        by_fw: dict[str, int] = {}
        by_platform: dict[str, int] = {}
        for r in rows:
            total += r["n"]
            online += r["online"]
            blocked += r["blocked"]
            fw, platform = r["_id"]["fw"], r["_id"]["platform"]
            by_fw[fw] = by_fw.get(fw, 0) + r["n"]
            by_platform[platform] = by_platform.get(platform, 0) + r["n"]
        return DeviceSummary(
            devices=total,
            online=online,
            offline=total - online,
            blocked=blocked,
            by_firmware=by_fw,
            by_platform=by_platform,
        )
