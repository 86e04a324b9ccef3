"""Users on SQLite."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from server.core.errors import NotFound
from server.core.model import Role, User
from server.ports.store import Page, PageRequest, UserFilter
from server.store.codec import from_us, to_us
from server.store.sqlite.common import Row, already_exists, fetch_one, keyset_page
from server.store.sqlite.db import Database, IntegrityViolation

_UNIQUE = {"users.email": "email", "users.username": "username", "users.user_id": "userId"}


def _user(row: Row) -> User:
    return User(
        user_id=row["user_id"],
        username=row["username"],
        email=row["email"],
        password_hash=row["password_hash"],
        role=Role(row["role"]),
        blocked=bool(row["blocked"]),
        created_at=from_us(row["created_at"]),
        updated_at=from_us(row["updated_at"]),
    )


class SqliteUsers:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: User) -> User:
        params = (
            user.user_id,
            user.username,
            user.email,
            user.password_hash,
            user.role.value,
            int(user.blocked),
            to_us(user.created_at),
            to_us(user.updated_at),
        )
        try:
            await self._db.write(lambda c: c.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)", params))
        except IntegrityViolation as exc:
            raise already_exists(exc, _UNIQUE, "a user") from None
        return user

    async def _get_by(self, column: str, value: str) -> User:
        sql = f"SELECT * FROM users WHERE {column} = ?"  # noqa: S608 - constant column
        row = await self._db.read(lambda c: fetch_one(c, sql, (value,)))
        if row is None:
            raise NotFound("user not found")
        return _user(row)

    async def get(self, user_id: str) -> User:
        return await self._get_by("user_id", user_id)

    async def get_by_email(self, email: str) -> User:
        return await self._get_by("email", email)

    async def get_by_username(self, username: str) -> User:
        return await self._get_by("username", username)

    async def list(self, flt: UserFilter, page: PageRequest) -> Page[User]:
        where: list[str] = []
        params: list[Any] = []
        if flt.blocked is not None:
            where.append("blocked = ?")
            params.append(int(flt.blocked))
        if flt.role is not None:
            where.append("role = ?")
            params.append(flt.role.value)
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
                to_item=_user,
            )

        return await self._db.read(run)

    async def _update(self, user_id: str, assignments: str, params: tuple[Any, ...]) -> User:
        sql = f"UPDATE users SET {assignments} WHERE user_id = ? RETURNING *"  # noqa: S608

        row = await self._db.write(lambda c: fetch_one(c, sql, (*params, user_id)))
        if row is None:
            raise NotFound("user not found")
        return _user(row)

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
