"""The SQLite schema as a list of forward migrations, versioned by PRAGMA user_version.

Migration i (0-based) takes the database from version i to i+1. Append, never edit: a file
written by an older server is brought forward at start-up; a file written by a newer server
(user_version beyond this list) is refused rather than misread. Times are INTEGER epoch
microseconds; free-form maps are JSON text.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            email TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            blocked INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        "CREATE INDEX users_created ON users (created_at, user_id)",
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            owner_id TEXT NOT NULL,
            name TEXT NOT NULL,
            platform TEXT NOT NULL,
            firmware_version TEXT NOT NULL,
            led TEXT NOT NULL,
            online INTEGER NOT NULL,
            last_seen INTEGER,
            presence_at INTEGER,
            health TEXT,
            blocked INTEGER NOT NULL,
            broker_username TEXT NOT NULL,
            credential_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        "CREATE INDEX devices_created ON devices (created_at, device_id)",
        "CREATE INDEX devices_owner ON devices (owner_id, created_at, device_id)",
        "CREATE INDEX devices_online_seen ON devices (online, last_seen)",
        "CREATE INDEX devices_firmware ON devices (firmware_version)",
        "CREATE INDEX devices_platform ON devices (platform)",
        """CREATE TABLE ota_jobs (
            job_id TEXT PRIMARY KEY,
            device_id TEXT NOT NULL,
            owner_id TEXT NOT NULL,
            platform TEXT NOT NULL,
            from_version TEXT NOT NULL,
            to_version TEXT NOT NULL,
            status TEXT NOT NULL,
            progress INTEGER NOT NULL,
            error TEXT NOT NULL,
            rollout_id TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        # At most one active job per device, enforced by the database itself.
        """CREATE UNIQUE INDEX ota_jobs_one_active ON ota_jobs (device_id)
            WHERE status IN ('STARTED', 'IN_PROGRESS')""",
        "CREATE INDEX ota_jobs_created ON ota_jobs (created_at, job_id)",
        "CREATE INDEX ota_jobs_device ON ota_jobs (device_id, created_at, job_id)",
        "CREATE INDEX ota_jobs_owner ON ota_jobs (owner_id, created_at, job_id)",
        "CREATE INDEX ota_jobs_status ON ota_jobs (status, updated_at)",
        "CREATE INDEX ota_jobs_rollout ON ota_jobs (rollout_id, status)",
        """CREATE TABLE rollouts (
            rollout_id TEXT PRIMARY KEY,
            platform TEXT NOT NULL,
            version TEXT NOT NULL,
            status TEXT NOT NULL,
            created_by TEXT NOT NULL,
            batch_size INTEGER NOT NULL,
            max_failure_ratio REAL NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )""",
        """CREATE UNIQUE INDEX rollouts_one_active ON rollouts (platform)
            WHERE status IN ('RUNNING', 'PAUSED')""",
        "CREATE INDEX rollouts_created ON rollouts (created_at, rollout_id)",
        """CREATE TABLE activity (
            entry_id TEXT PRIMARY KEY,
            time INTEGER NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details TEXT NOT NULL
        )""",
        "CREATE INDEX activity_time ON activity (time, entry_id)",
        "CREATE INDEX activity_actor ON activity (actor, time, entry_id)",
        "CREATE INDEX activity_target ON activity (target, time, entry_id)",
    ),
    # A rollout's optional from-version filter (CreateRolloutRequest.from_version).
    ("ALTER TABLE rollouts ADD COLUMN from_version TEXT NOT NULL DEFAULT ''",),
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(sqlite3.DatabaseError):
    pass


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction; returns the version found."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(f"database schema version {found} is newer than this server's {SCHEMA_VERSION}")
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            # user_version lives in the file header and is written inside this transaction
            conn.execute(f"PRAGMA user_version = {version + 1}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found
