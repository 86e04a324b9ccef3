"""Users on MongoDB."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.core.model import Role, User
from server.ports.store import Page, PageRequest, UserFilter
from server.store.codec import USER_LIST, to_us, user_from, user_matches, user_record
from server.store.mongo.common import Collection, Doc, Names, find_one, keyset_page, set_fields, translated

UNIQUE = {"email": "email", "username": "username", "_id": "userId", "_id_": "userId"}


NAMES = Names("user_id")
_MISSING = "user not found"


def _user(d: Doc) -> User:
    return user_from(NAMES.of(d))


class MongoUsers:
    def __init__(self, coll: Collection) -> None:
        self._c = coll

    async def create(self, user: User) -> User:
        with translated("a user", UNIQUE):
            await self._c.insert_one(NAMES.doc(user_record(user)))
        return user

    async def _get_by(self, field: str, value: str) -> User:
        return _user(await find_one(self._c, {field: value}, _MISSING))

    async def get(self, user_id: str) -> User:
        return await self._get_by("_id", user_id)

    async def get_by_email(self, email: str) -> User:
        return await self._get_by("email", email)

    async def get_by_username(self, username: str) -> User:
        return await self._get_by("username", username)

    async def list(self, flt: UserFilter, page: PageRequest) -> Page[User]:
        query = NAMES.doc(user_matches(flt))
        if flt.email_prefix:
            # a range, not a regex: exact for any unicode prefix and served by the email index
            query["email"] = {"$gte": flt.email_prefix, "$lt": flt.email_prefix + "\U0010ffff"}
        return await keyset_page(self._c, NAMES, USER_LIST, query, page, _user)

    async def _set(self, user_id: str, fields: dict[str, Any]) -> User:
        return _user(await set_fields(self._c, user_id, fields, _MISSING))

    async def set_blocked(self, user_id: str, blocked: bool, at: datetime) -> User:
        return await self._set(user_id, {"blocked": blocked, "updatedAt": to_us(at)})

    async def set_role(self, user_id: str, role: Role, at: datetime) -> User:
        return await self._set(user_id, {"role": role.value, "updatedAt": to_us(at)})

    async def set_password_hash(self, user_id: str, password_hash: str, at: datetime) -> User:
        return await self._set(user_id, {"passwordHash": password_hash, "updatedAt": to_us(at)})

    async def count_admins(self, active_only: bool = True) -> int:
        query: Doc = {"role": Role.ADMIN.value}
        if active_only:
            query["blocked"] = False
        with translated():
            return await self._c.count_documents(query)
