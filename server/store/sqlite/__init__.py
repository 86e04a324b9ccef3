"""The embedded store on SQLite (standard library): the default when MONGO_URI is unset."""

from server.store.sqlite.store import SqliteStore, open_sqlite_store

__all__ = ["SqliteStore", "open_sqlite_store"]
