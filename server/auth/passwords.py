"""argon2id password hashing.

The parameters are stored inside each hash (the PHC string), so raising them later needs no
migration: `needs_rehash` tells the login path to re-hash with the current parameters.
Hashing costs tens of milliseconds of CPU by design; callers run it off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@dataclass(frozen=True)
class Argon2Params:
    # OWASP's argon2id recommendation (19 MiB, 2 iterations, 1 lane) as the floor.
    time_cost: int = 2
    memory_cost_kib: int = 19 * 1024
    parallelism: int = 1


class Passwords:
    def __init__(self, params: Argon2Params | None = None) -> None:
        p = params or Argon2Params()
        self._hasher = PasswordHasher(
            time_cost=p.time_cost, memory_cost=p.memory_cost_kib, parallelism=p.parallelism, type=Type.ID
        )
        # Verified against when the email is unknown, so that path costs what a wrong password costs.
        self._dummy_hash = self._hasher.hash("dummy password for timing equalisation")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; an unknown user (None) costs the same and is False."""
        target = password_hash or self._dummy_hash
        try:
            ok = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return bool(ok) and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
