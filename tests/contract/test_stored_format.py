"""What each backend stores is fixed: databases written by an earlier server must still read.

The field names, and how times, enums and free-form maps are stored, are pinned here, so a
change to the shared codec that would orphan stored data fails a test instead of a deployment.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.ports.store import Store
from server.store.codec import to_us
from server.store.mongo import MongoStore
from server.store.sqlite.store import SqliteStore
from tests.support.factory import Factory

FIELDS = {
    "sqlite": {
        "users": "user_id username email password_hash role blocked created_at updated_at",
        "devices": "device_id owner_id name platform firmware_version led online last_seen presence_at "
        "health blocked broker_username credential_hash created_at updated_at",
        "ota_jobs": "job_id device_id owner_id platform from_version to_version status progress error "
        "rollout_id created_at updated_at",
        "rollouts": "rollout_id platform version status created_by batch_size max_failure_ratio "
        "created_at updated_at from_version",
        "activity": "entry_id time actor action target details",
    },
    "mongo": {
        "users": "_id username email passwordHash role blocked createdAt updatedAt",
        "devices": "_id owner name platform firmwareVersion led online lastSeen presenceAt health blocked "
        "brokerUsername credentialHash createdAt updatedAt",
        "ota_jobs": "_id deviceId owner platform fromVersion toVersion status progress error rolloutId "
        "createdAt updatedAt activeDevice",
        "rollouts": "_id platform version status createdBy batchSize maxFailureRatio createdAt updatedAt "
        "fromVersion activePlatform",
        "activity": "_id time actor action target details",
    },
}


async def _raw(store: Store, table: str) -> dict[str, Any]:
    """The one stored row or document of a table, as the database holds it."""
    if isinstance(store, SqliteStore):
        rows = await store.db.read(lambda c: c.execute(f"SELECT * FROM {table}").fetchall())
        assert len(rows) == 1
        return dict(rows[0])
    assert isinstance(store, MongoStore)
    docs = await store.database[table].find({}).to_list()
    assert len(docs) == 1
    return dict(docs[0])


async def test_every_entity_keeps_its_stored_names_and_encodings(store: Store, backend: str, f: Factory) -> None:
    user = await store.users.create(f.user())
    device = await store.devices.create(f.device(owner_id=user.user_id, health=f.health(extra={"a.b": 1})))
    await store.ota_jobs.create(f.ota_job(device))
    await store.rollouts.create(f.rollout())
    entry = f.activity()
    await store.activity.append(entry)
    raw = {table: await _raw(store, table) for table in FIELDS[backend]}
    for table, names in FIELDS[backend].items():
        assert set(raw[table]) == set(names.split()), table

    created = "created_at" if backend == "sqlite" else "createdAt"
    assert raw["users"][created] == to_us(user.created_at)  # epoch microseconds
    assert raw["users"]["role"] == "USER"  # an enum as its value
    assert raw["devices"]["led"] == "UNKNOWN"
    assert device.health is not None
    if backend == "sqlite":  # the whole health report is one JSON text, its extra map inline
        health = json.loads(raw["devices"]["health"])
        assert health["extra"] == {"a.b": 1} and health["reportedAt"] == to_us(device.health.reported_at)
    else:  # a subdocument whose extra map is JSON text ('.' and '$' are special in field names)
        assert raw["devices"]["health"]["extra"] == '{"a.b":1}'
        assert raw["devices"]["health"]["reportedAt"] == to_us(device.health.reported_at)
    assert json.loads(raw["activity"]["details"]) == entry.details


async def test_a_rollout_document_from_before_the_from_version_field_reads_as_any_version(
    store: Store, f: Factory
) -> None:
    if not isinstance(store, MongoStore):
        pytest.skip("SQLite: see test_sqlite_file's migration test")
    rollout = await store.rollouts.create(f.rollout(from_version=""))
    await store.database["rollouts"].update_one({"_id": rollout.rollout_id}, {"$unset": {"fromVersion": ""}})
    assert await store.rollouts.get(rollout.rollout_id) == rollout
