"""The SQLite engine: one writer thread, a pool of reader threads, errors translated.

sqlite3 calls block, so none runs on the event loop. Writes go through one dedicated thread
and connection (SQLite allows one writer at a time anyway; serialising them in-process avoids
busy-waiting on the file lock) and each write is one `BEGIN IMMEDIATE` transaction, so a
read-then-write inside it is atomic against every other writer, in this process or another.
Reads run on a small pool, each thread with its own connection; WAL lets them proceed while
a write is in progress.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from server.core.errors import DomainError, InvalidArgument, Unavailable
from server.store.sqlite.schema import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
READER_THREADS = 4
MIN_SQLITE = (3, 35, 0)  # RETURNING


# The database holds password hashes and device credential hashes: owner-only, like the
# broker's state. SQLite gives the -wal and -shm files the main file's mode when it creates
# them, so creating the main file 0600 covers all three.
DIR_MODE = 0o700
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")


def private_files(path: pathlib.Path) -> None:
    """Make the database's directory 0700 and its files 0600, creating the directory and an
    empty database file that way; files an older server left readable are tightened too."""
    directory = path.parent
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(directory, DIR_MODE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        if candidate.exists():
            _tighten(candidate, FILE_MODE)


def _tighten(target: pathlib.Path, mode: int) -> None:
    current = target.stat().st_mode & 0o777
    if current & ~mode == 0:
        return
    try:
        target.chmod(current & mode)
    except OSError as exc:  # e.g. a volume owned by another user: serve, but say so
        log.warning("cannot restrict %s to %o (it is %o): %s", target, mode, current, exc)


class IntegrityViolation(Exception):
    """A constraint failed inside a write; the aggregate module turns it into AlreadyExists."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Database:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # autocommit; transactions are explicit
            check_same_thread=False,  # each connection stays on its thread; close() is after
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable across crashes in WAL mode
        with self._lock:
            self._connections.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise Unavailable(
                f"SQLite {sqlite3.sqlite_version} is too old; {'.'.join(map(str, MIN_SQLITE))} or newer is needed"
            )

        def setup() -> None:
            private_files(self.path)
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL ({mode})")
            migrate(conn)

        await self._run(self._writer, setup)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in one IMMEDIATE transaction on the writer thread."""

        def tx() -> T:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run(self._writer, tx)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn on a reader thread; several statements see one snapshot."""

        def tx() -> T:
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await self._run(self._readers, tx)

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        if self._closed:
            raise Unavailable("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, fn)
        except DomainError:
            raise
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(str(exc)) from None
        except OverflowError as exc:  # an int beyond SQLite's 64 bits
            raise InvalidArgument(f"value out of range: {exc}") from None
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            # locked past busy_timeout, disk full or unwritable, file corrupt or gone
            log.warning("sqlite error on %s: %s", self.path, exc)
            raise Unavailable(f"database unavailable: {exc}") from None
        except RuntimeError as exc:  # executor shut down under us
            raise Unavailable(f"database unavailable: {exc}") from None

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
