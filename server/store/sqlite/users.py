"""Users on SQLite."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.core.model import Role, User
from server.ports.store import Page, PageRequest, UserFilter
from server.store.codec import USER_LIST, to_us, user_from, user_matches, user_record
from server.store.sqlite.common import equal_where, insert, keyset_page, read_one, update_one
from server.store.sqlite.db import Database

_UNIQUE = {"users.email": "email", "users.username": "username", "users.user_id": "userId"}


class SqliteUsers:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: User) -> User:
        await insert(self._db, "users", user_record(user), _UNIQUE, "a user")
        return user

    async def _get_by(self, column: str, value: str) -> User:
        sql = f"SELECT * FROM users WHERE {column} = ?"  # noqa: S608 - constant column
        return user_from(await read_one(self._db, sql, (value,), "user not found"))

    async def get(self, user_id: str) -> User:
        return await self._get_by("user_id", user_id)

    async def get_by_email(self, email: str) -> User:
        return await self._get_by("email", email)

    async def get_by_username(self, username: str) -> User:
        return await self._get_by("username", username)

    async def list(self, flt: UserFilter, page: PageRequest) -> Page[User]:
        where, params = equal_where(user_matches(flt))
        if flt.email_prefix:
            where.append("substr(email, 1, ?) = ?")
            params += [len(flt.email_prefix), flt.email_prefix]
        return await keyset_page(self._db, "users", USER_LIST, where, params, page, user_from)

    async def _update(self, user_id: str, assignments: str, params: tuple[Any, ...]) -> User:
        return user_from(await update_one(self._db, "users", "user_id", user_id, assignments, params, "user not found"))

    async def set_blocked(self, user_id: str, blocked: bool, at: datetime) -> User:
        return await self._update(user_id, "blocked = ?, updated_at = ?", (int(blocked), to_us(at)))

    async def set_role(self, user_id: str, role: Role, at: datetime) -> User:
        return await self._update(user_id, "role = ?, updated_at = ?", (role.value, to_us(at)))

    async def set_password_hash(self, user_id: str, password_hash: str, at: datetime) -> User:
        return await self._update(user_id, "password_hash = ?, updated_at = ?", (password_hash, to_us(at)))

    async def count_admins(self, active_only: bool = True) -> int:
        sql = "SELECT count(*) FROM users WHERE role = 'ADMIN'"
        if active_only:
            sql += " AND blocked = 0"
        n = await self._db.read(lambda c: c.execute(sql).fetchone()[0])
        return int(n)
