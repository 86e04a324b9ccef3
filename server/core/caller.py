"""The authenticated caller of an operation, as core sees it."""

from __future__ import annotations

from dataclasses import dataclass

from server.core.model import Role


@dataclass(frozen=True)
class Caller:
    user_id: str
    role: Role
    username: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def actor(self) -> str:
        """How the activity log names this caller."""
        return self.user_id
