"""The store contract suite's fixtures: one `store` per backend, each test on a clean one.

- "sqlite": a fresh file in a temporary directory.
- "mongo": SecantusDB (started once per session) with a fresh database name per test.
- "mongo-real": the MongoDB at MONGO_URI, when that is set; a fresh database per test.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import AsyncIterator

import pytest

from server.ports.store import Store
from server.store.mongo import MongoStore, open_mongo_store
from tests.support.factory import Factory
from tests.support.stores import sqlite_store

BACKENDS = ["sqlite", "mongo"] + (["mongo-real"] if os.environ.get("MONGO_URI") else [])


def _mongo_uri(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "mongo-real":
        return os.environ["MONGO_URI"]
    uri: str = request.getfixturevalue("secantus_uri")
    return uri


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Store]:
    backend: str = request.param
    if backend == "sqlite":
        async with sqlite_store(tmp_path) as s:
            yield s
        return
    mongo_store = await open_mongo_store(_mongo_uri(backend, request), f"contract_{uuid.uuid4().hex[:12]}")
    try:
        yield mongo_store
    finally:
        await mongo_store.client.drop_database(mongo_store.database.name)
        await mongo_store.close()


@pytest.fixture
def backend(store: Store) -> str:
    return "mongo" if isinstance(store, MongoStore) else "sqlite"


@pytest.fixture
def f() -> Factory:
    return Factory()
