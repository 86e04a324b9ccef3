"""The access check the interceptor runs before every handler, driven by the policy table."""

from __future__ import annotations

from server.auth.policy import POLICY, Access
from server.core.caller import Caller
from server.core.errors import PermissionDenied, Unauthenticated
from server.core.users import Users


def bearer_token(metadata: dict[str, str]) -> str:
    """The token from `authorization: Bearer <token>` (gRPC metadata or, via Envoy, the HTTP header)."""
    value = metadata.get("authorization", "").strip()
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


class PolicyAuthorizer:
    def __init__(self, users: Users, policy: dict[str, Access] | None = None) -> None:
        self._users = users
        self._policy = POLICY if policy is None else policy

    async def authorize(self, method: str, metadata: dict[str, str]) -> Caller | None:
        access = self._policy.get(method)
        if access is None:
            # Fail closed: an RPC nobody classified is nobody's to call.
            raise PermissionDenied(f"{method} has no access policy")
        if access is Access.PUBLIC:
            return None
        token = bearer_token(metadata)
        if not token:
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
        caller = await self._users.authenticate(token)
        if access is Access.ADMIN and not caller.is_admin:
            raise PermissionDenied("admin role required")
        return caller
