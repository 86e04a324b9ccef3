"""The embedded store's file: WAL, versioned schema, data kept across restarts."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3

import pytest

from server.core.errors import Unavailable
from server.ports.store import DeviceFilter, PageRequest
from server.store.codec import to_us
from server.store.factory import open_store
from server.store.sqlite import open_sqlite_store
from server.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from tests.support.factory import Factory
from tests.support.stores import sqlite_store


async def test_data_survives_a_restart_under_data_dir(tmp_path: pathlib.Path) -> None:
    f = Factory()
    store = await open_store(None, tmp_path / "data")
    user = await store.users.create(f.user())
    device = await store.devices.create(f.device(owner_id=user.user_id))
    await store.close()
    assert (tmp_path / "data" / "control-plane.db").is_file()
    reopened = await open_store("", tmp_path / "data")
    try:
        assert await reopened.users.get(user.user_id) == user
        assert await reopened.devices.get(device.device_id) == device
    finally:
        await reopened.close()


async def test_wal_and_schema_version(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "control-plane.db"
    store = await open_sqlite_store(path)
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_newer_schema_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "control-plane.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(Unavailable, match="newer"):
        await open_sqlite_store(path)


async def test_a_file_from_schema_version_1_is_migrated_and_its_rows_still_read(tmp_path: pathlib.Path) -> None:
    f = Factory()
    user, rollout = f.user(), f.rollout(from_version="")
    path = tmp_path / "control-plane.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    # rows as a version-1 server wrote them: positional, before rollouts had from_version
    conn.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (user.user_id, user.username, user.email, user.password_hash, user.role.value, 0,
                  to_us(user.created_at), to_us(user.updated_at)))  # fmt: skip
    conn.execute("INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (rollout.rollout_id, rollout.platform, rollout.version, rollout.status.value, rollout.created_by,
                  rollout.batch_size, rollout.max_failure_ratio, to_us(rollout.created_at),
                  to_us(rollout.updated_at)))  # fmt: skip
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = await open_sqlite_store(path)
    try:
        assert await store.users.get(user.user_id) == user
        assert await store.rollouts.get(rollout.rollout_id) == rollout
        await store.rollouts.create(f.rollout(from_version="1.0.0"))  # and new rows name their columns
    finally:
        await store.close()


async def test_many_concurrent_callers_do_not_block_the_loop(tmp_path: pathlib.Path) -> None:
    f = Factory()
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async with sqlite_store(tmp_path) as store:
        task = asyncio.create_task(ticker())
        devices = [f.device() for _ in range(200)]
        await asyncio.gather(*(store.devices.create(d) for d in devices))
        pages = await asyncio.gather(*(store.devices.list(DeviceFilter(), PageRequest(size=500)) for _ in range(50)))
        stop.set()
        await task
        assert all(len(p.items) == 200 for p in pages)
        assert ticks > 50  # the loop kept running while the threads worked


def _mode(path: pathlib.Path) -> int:
    return path.stat().st_mode & 0o777


async def test_the_database_and_its_wal_and_shm_are_owner_only(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    store = await open_store(None, data)
    try:
        await store.users.create(Factory().user())  # a write, so the -wal and -shm files exist
        files = [data / "control-plane.db", data / "control-plane.db-wal", data / "control-plane.db-shm"]
        assert all(f.exists() for f in files)
        assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
        assert oct(_mode(data)) == "0o700"
    finally:
        await store.close()


async def test_files_an_older_server_left_readable_are_tightened(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    store = await open_store(None, data)
    await store.close()
    data.chmod(0o755)
    for f in data.iterdir():
        f.chmod(0o644)
    reopened = await open_store(None, data)
    try:
        assert oct(_mode(data)) == "0o700"
        assert {oct(_mode(f)) for f in data.iterdir() if f.name.startswith("control-plane.db")} == {"0o600"}
    finally:
        await reopened.close()
