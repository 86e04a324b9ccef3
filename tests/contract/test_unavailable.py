"""A database that is down or unusable answers Unavailable promptly, never a hang or a
driver exception."""

from __future__ import annotations

import asyncio
import gc
import pathlib
import time
import warnings
from collections.abc import AsyncIterator

import pytest

from server.core.errors import Unavailable
from server.store.factory import open_store
from server.store.mongo import open_mongo_store
from server.store.sqlite import open_sqlite_store
from tests.support.factory import Factory
from tests.support.mongo import free_port, secantus_server


@pytest.fixture(autouse=True)
async def _collect_pymongo_cancelled_sockets() -> AsyncIterator[None]:
    """pymongo 4.x's async connect (pool_shared._async_create_connection) closes its socket on
    OSError/TimeoutError but not on CancelledError, so closing a client whose monitor is
    mid-connect to a dead server leaks one socket, reported as a ResourceWarning whenever
    the GC gets to it. Collect it here rather than in some later, unrelated test."""
    yield
    await asyncio.sleep(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


FAST = {"serverSelectionTimeoutMS": 500, "connectTimeoutMS": 500, "socketTimeoutMS": 1000}


async def test_mongo_unreachable_at_start() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await open_mongo_store(uri, "x", timeouts_ms=FAST)
    assert time.monotonic() - started < 5


async def test_default_timeouts_are_bounded() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await open_store(uri, pathlib.Path("/nonexistent"))
    assert time.monotonic() - started < 10


@pytest.mark.slow
async def test_mongo_going_down_mid_life(tmp_path: pathlib.Path) -> None:
    f = Factory()
    with secantus_server() as uri:
        store = await open_mongo_store(uri, "downtest", timeouts_ms=FAST)
        device = await store.devices.create(f.device())
    # the server is gone now
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await store.devices.get(device.device_id)
        with pytest.raises(Unavailable):
            await store.devices.apply_heartbeats([f.heartbeat(device.device_id)])
        with pytest.raises(Unavailable):
            await store.ping()
        assert time.monotonic() - started < 10
    finally:
        await store.close()


async def test_sqlite_unwritable_path(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(Unavailable):
        await open_sqlite_store(blocker / "control-plane.db")
    with pytest.raises(Unavailable):
        await open_store(None, blocker)


async def test_sqlite_closed_store(tmp_path: pathlib.Path) -> None:
    store = await open_sqlite_store(tmp_path / "db.sqlite")
    await store.close()
    with pytest.raises(Unavailable):
        await store.users.get("x")


async def test_sqlite_corrupt_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "control-plane.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(Unavailable):
        await open_sqlite_store(path)
