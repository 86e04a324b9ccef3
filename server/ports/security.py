"""Ports for credentials: password hashing and bearer tokens (implemented in server/auth)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.core.model import Role


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    role: Role
    token_id: str
    issued_at: datetime
    expires_at: datetime


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """False for a mismatch; None (unknown user) costs the same as a real check."""
        ...

    def needs_rehash(self, password_hash: str) -> bool: ...


class TokenIssuer(Protocol):
    @property
    def ttl_seconds(self) -> int: ...

    def issue(self, user_id: str, role: Role, now: datetime) -> str: ...

    def verify(self, token: str) -> TokenClaims:
        """Unauthenticated for an expired, tampered, malformed or wrongly signed token."""
        ...
