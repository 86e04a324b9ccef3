"""The MongoDB store: client set-up with bounded timeouts, indexes, the aggregates."""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.uri_parser import parse_uri

from server.core.errors import InvalidArgument
from server.store.mongo.activity import MongoActivity
from server.store.mongo.common import Doc, translated
from server.store.mongo.devices import MongoDevices
from server.store.mongo.ota import MongoOtaJobs, MongoRollouts
from server.store.mongo.users import MongoUsers

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "iot"
# A dead or unreachable server must turn into Unavailable within seconds, not hang a caller.
# A value given in the URI wins over these.
TIMEOUTS_MS = {
    "serverSelectionTimeoutMS": 3000,
    "connectTimeoutMS": 3000,
    "socketTimeoutMS": 10000,
}

INDEXES: dict[str, list[IndexModel]] = {
    "users": [
        IndexModel([("email", ASCENDING)], unique=True, name="email"),
        IndexModel([("username", ASCENDING)], unique=True, name="username"),
        IndexModel([("createdAt", ASCENDING), ("_id", ASCENDING)], name="created"),
    ],
    # the device id is the _id: unique by the _id index
    "devices": [
        IndexModel([("owner", ASCENDING), ("createdAt", ASCENDING), ("_id", ASCENDING)], name="owner"),
        IndexModel([("createdAt", ASCENDING), ("_id", ASCENDING)], name="created"),
        IndexModel([("online", ASCENDING), ("lastSeen", ASCENDING)], name="online_lastSeen"),
        IndexModel([("lastSeen", ASCENDING)], name="lastSeen"),
        IndexModel([("firmwareVersion", ASCENDING)], name="firmwareVersion"),
        IndexModel([("platform", ASCENDING)], name="platform"),
    ],
    "ota_jobs": [
        IndexModel([("activeDevice", ASCENDING)], unique=True, sparse=True, name="one_active_job"),
        IndexModel(
            [("deviceId", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)],
            name="device",
        ),
        IndexModel([("status", ASCENDING), ("updatedAt", ASCENDING)], name="status"),
        IndexModel([("rolloutId", ASCENDING), ("status", ASCENDING)], name="rollout"),
        IndexModel([("createdAt", DESCENDING), ("_id", DESCENDING)], name="created"),
        IndexModel([("owner", ASCENDING), ("createdAt", DESCENDING), ("_id", DESCENDING)], name="owner"),
    ],
    "rollouts": [
        IndexModel([("activePlatform", ASCENDING)], unique=True, sparse=True, name="one_active_rollout"),
        IndexModel([("createdAt", DESCENDING), ("_id", DESCENDING)], name="created"),
    ],
    "activity": [
        IndexModel([("time", DESCENDING), ("_id", DESCENDING)], name="time"),
        IndexModel([("actor", ASCENDING), ("time", DESCENDING)], name="actor"),
        IndexModel([("target", ASCENDING), ("time", DESCENDING)], name="target"),
    ],
}


class MongoStore:
    def __init__(self, client: AsyncMongoClient[Doc], database: str) -> None:
        self.client = client
        db = client[database]
        self.database = db
        self.users = MongoUsers(db["users"])
        self.devices = MongoDevices(db["devices"])
        self.ota_jobs = MongoOtaJobs(db["ota_jobs"])
        self.rollouts = MongoRollouts(db["rollouts"])
        self.activity = MongoActivity(db["activity"])

    async def ensure_indexes(self) -> None:
        with translated():
            for name, models in INDEXES.items():
                await self.database[name].create_indexes(models)

    async def ping(self) -> None:
        with translated():
            await self.client.admin.command("ping")

    async def close(self) -> None:
        await self.client.close()


def _client(uri: str, timeout_ms: dict[str, int]) -> AsyncMongoClient[Doc]:
    given = {k.lower() for k in parse_uri(uri)["options"]}
    extra: dict[str, Any] = {k: v for k, v in timeout_ms.items() if k.lower() not in given}
    # tz_aware and a uuid representation are irrelevant: the store keeps times as ints
    return AsyncMongoClient(uri, appname="esp32-control-plane", **extra)


async def open_mongo_store(
    uri: str, database: str | None = None, *, timeouts_ms: dict[str, int] | None = None
) -> MongoStore:
    """Connect, check the server answers (Unavailable if not) and create the indexes."""
    try:
        client = _client(uri, {**TIMEOUTS_MS, **(timeouts_ms or {})})
    except Exception as exc:  # ConfigurationError, InvalidURI, ValueError from the parser
        raise InvalidArgument(f"invalid MONGO_URI: {exc}") from None
    name = database or client.get_default_database(DEFAULT_DATABASE).name
    store = MongoStore(client, name)
    try:
        await store.ping()
        await store.ensure_indexes()
    except BaseException:
        await store.close()
        raise
    return store
