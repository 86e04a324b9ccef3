"""Users on SQLite."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from server.core.errors import NotFound
from server.core.model import Role, User
from server.ports.store import Page, PageRequest, UserFilter
from server.store.codec import to_us, user_from, user_matches, user_record
from server.store.sqlite.common import already_exists, equal_where, fetch_one, insert_sql, keyset_page
from server.store.sqlite.db import Database, IntegrityViolation

_UNIQUE = {"users.email": "email", "users.username": "username", "users.user_id": "userId"}


class SqliteUsers:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: User) -> User:
        sql, params = insert_sql("users", user_record(user))
        try:
            await self._db.write(lambda c: c.execute(sql, params))
        except IntegrityViolation as exc:
            raise already_exists(exc, _UNIQUE, "a user") from None
        return user

    async def _get_by(self, column: str, value: str) -> User:
        sql = f"SELECT * FROM users WHERE {column} = ?"  # noqa: S608 - constant column
        row = await self._db.read(lambda c: fetch_one(c, sql, (value,)))
        if row is None:
            raise NotFound("user not found")
        return user_from(row)

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

        def run(c: sqlite3.Connection) -> Page[User]:
            return keyset_page(
                c,
                kind="users",
                table="users",
                sort_col="created_at",
                id_col="user_id",
                where=where,
                params=params,
                page=page,
                descending=False,
                to_item=user_from,
            )

        return await self._db.read(run)

    async def _update(self, user_id: str, assignments: str, params: tuple[Any, ...]) -> User:
        sql = f"UPDATE users SET {assignments} WHERE user_id = ? RETURNING *"  # noqa: S608

        row = await self._db.write(lambda c: fetch_one(c, sql, (*params, user_id)))
        if row is None:
            raise NotFound("user not found")
        return user_from(row)

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
