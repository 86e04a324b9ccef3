"""Store benchmark: batched heartbeat writes/s and point reads/s for each adapter, next to a
raw sqlite3 baseline measured in the same run (so the ratios travel between machines).

    python -m loadtest.bench_store [--devices 5000] [--batch 1000] [--seconds 3]
                                   [--mongo-uri URI]   # default: a SecantusDB it starts

Each phase runs for about --seconds; the whole run stays well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from server.ports.store import Store
from server.store.mongo import MongoStore, open_mongo_store
from server.store.sqlite import open_sqlite_store
from tests.support.factory import Factory
from tests.support.mongo import secantus_server

READ_CONCURRENCY = 16


@dataclass
class Result:
    name: str
    writes_per_s: float
    reads_per_s: float


def raw_sqlite(path: Path, devices: int, batch: int, seconds: float) -> Result:
    """The floor of what SQLite itself costs here: one connection, WAL, the same UPDATE as
    the adapter, executemany of `batch` rows per transaction; reads by primary key."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE devices (device_id TEXT PRIMARY KEY, online INTEGER, last_seen INTEGER,"
        " presence_at INTEGER, health TEXT, firmware_version TEXT, payload TEXT)"
    )
    ids = [f"esp32-{i:06d}" for i in range(devices)]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO devices VALUES (?, 0, NULL, NULL, NULL, '1.0.0', ?)",
        [(i, "x" * 200) for i in ids],
    )
    conn.execute("COMMIT")
    sql = (
        "UPDATE devices SET last_seen = ?, health = ?, firmware_version = coalesce(?, "
        "firmware_version), online = CASE WHEN presence_at IS NULL OR presence_at <= ? "
        "THEN 1 ELSE online END WHERE device_id = ? AND (last_seen IS NULL OR last_seen <= ?)"
    )
    health = '{"heap":18000,"uptime":300,"rssi":-55,"extra":{},"reportedAt":0}'
    written, t, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t += 1
        rows = [(t, health, "1.0.0", t, ids[(written + k) % devices], t) for k in range(batch)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
        written += batch
    writes = written / (time.perf_counter() - start)
    reads, start = 0, time.perf_counter()
    rng = random.Random(1)
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            conn.execute("SELECT * FROM devices WHERE device_id = ?", (rng.choice(ids),)).fetchone()
        reads += 100
    conn.close()
    return Result("raw sqlite3 (1 conn, in-thread)", writes, reads / (time.perf_counter() - start))


async def bench_store(name: str, store: Store, devices: int, batch: int, seconds: float) -> Result:
    f = Factory()
    ids: list[str] = []
    for chunk in range(0, devices, 500):
        made = [f.device() for _ in range(min(500, devices - chunk))]
        await asyncio.gather(*(store.devices.create(d) for d in made))
        ids += [d.device_id for d in made]
    base = f.tick()
    written, round_no = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        round_no += 1
        at = base + timedelta(milliseconds=round_no)
        hbs = [f.heartbeat(ids[(written + k) % devices], at=at) for k in range(batch)]
        await store.devices.apply_heartbeats(hbs)
        written += batch
    writes = written / (time.perf_counter() - start)

    rng = random.Random(1)
    reads = 0
    deadline = time.perf_counter() + seconds

    async def reader() -> None:
        nonlocal reads
        while time.perf_counter() < deadline:
            await store.devices.get(rng.choice(ids))
            reads += 1

    start = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(READ_CONCURRENCY)))
    return Result(name, writes, reads / (time.perf_counter() - start))


@contextlib.contextmanager
def mongo_uri(given: str | None) -> Iterator[tuple[str, str]]:
    if given:
        yield given, "MongoDB at --mongo-uri"
        return
    with secantus_server() as uri:
        yield uri, "mongo adapter (SecantusDB)"


async def run(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        results.append(raw_sqlite(Path(tmp, "raw.db"), args.devices, args.batch, args.seconds))
        sqlite_store = await open_sqlite_store(Path(tmp, "control-plane.db"))
        try:
            results.append(await bench_store("sqlite adapter", sqlite_store, args.devices, args.batch, args.seconds))
        finally:
            await sqlite_store.close()
    with mongo_uri(args.mongo_uri) as (uri, label):
        mongo: MongoStore = await open_mongo_store(uri, f"bench_{uuid.uuid4().hex[:8]}")
        try:
            results.append(await bench_store(label, mongo, args.mongo_devices, args.batch, args.seconds))
        finally:
            await mongo.client.drop_database(mongo.database.name)
            await mongo.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0, help="per phase")
    parser.add_argument("--mongo-uri", default=None)
    parser.add_argument(
        "--mongo-devices",
        type=int,
        default=1000,
        help="fleet size for the Mongo adapter (SecantusDB is a pure-Python server)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = asyncio.run(run(args))
    baseline = results[0]
    print(f"{args.devices} devices, heartbeat batches of {args.batch}, ~{args.seconds}s/phase")
    print(f"{'':34} {'heartbeats/s':>14} {'x raw':>6} {'point reads/s':>14} {'x raw':>6}")
    for r in results:
        print(
            f"{r.name:34} {r.writes_per_s:14,.0f} {r.writes_per_s / baseline.writes_per_s:6.2f}"
            f" {r.reads_per_s:14,.0f} {r.reads_per_s / baseline.reads_per_s:6.2f}"
        )
    print(
        f"(point reads: {READ_CONCURRENCY} concurrent callers on the adapters; total run "
        f"{time.perf_counter() - started:.1f}s)"
    )


if __name__ == "__main__":
    main()
