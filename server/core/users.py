"""Accounts: registration, login, blocking, the first admin, and who a token belongs to."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass, replace

from server.core.activity import SYSTEM, ActivityLog
from server.core.caller import Caller
from server.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.core.login_throttle import LoginThrottle
from server.core.model import Role, User
from server.ports.clock import Clock
from server.ports.security import PasswordHasher, TokenIssuer
from server.ports.store import Page, PageRequest, UserFilter, UserStore

# Lower-case letters and digits, with single '_', '.' or '-' between them: no leading, trailing
# or doubled separators, so "admin." or "admin_" cannot pose as "admin" beside it.
USERNAME_RE = re.compile(r"^(?=.{3,32}$)[a-z0-9]+(?:[_.-][a-z0-9]+)*$")
USERNAME_RULE = (
    "username must be 3-32 characters of letters, digits, '_', '.', '-', starting and ending with a letter or digit"
    " and no two separators together"
)
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MAX_EMAIL = 254
# argon2 hashes any length, but a megabyte password is a denial-of-service attempt.
MAX_PASSWORD = 1024
BAD_CREDENTIALS = "invalid email or password"


@dataclass(frozen=True)
class LoginResult:
    token: str
    expires_in: int
    user: User


def normalize_email(email: str) -> str:
    return unicodedata.normalize("NFC", email).strip().lower()


def normalize_username(username: str) -> str:
    """The one spelling a username is stored and compared in: NFKC (full-width letters become
    ASCII) and case-folded, so "ADMIN" and "Admin" are the same account name as "admin"."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def validate_email(email: str) -> str:
    normalized = normalize_email(email)
    if not normalized:
        raise InvalidArgument("email is required")
    if len(normalized) > MAX_EMAIL or not EMAIL_RE.match(normalized):
        raise InvalidArgument("email is not a valid address")
    return normalized


def password_problems(password: str, min_length: int) -> list[str]:
    problems = []
    if len(password) < min_length:
        problems.append(f"password must be at least {min_length} characters")
    if len(password) > MAX_PASSWORD:
        problems.append(f"password must be at most {MAX_PASSWORD} characters")
    if password and not password.strip():
        problems.append("password must not be only whitespace")
    return problems


class Users:
    def __init__(
        self,
        store: UserStore,
        passwords: PasswordHasher,
        tokens: TokenIssuer,
        activity: ActivityLog,
        clock: Clock,
        throttle: LoginThrottle | None = None,
        min_password_length: int = 8,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._tokens = tokens
        self._activity = activity
        self._clock = clock
        self._throttle = throttle or LoginThrottle()
        self._min_password_length = min_password_length

    async def register(self, username: str, email: str, password: str, role: Role = Role.USER) -> User:
        username = normalize_username(username)
        problems = []
        if not USERNAME_RE.fullmatch(username):
            problems.append(USERNAME_RULE)
        try:
            email = validate_email(email)
        except InvalidArgument as exc:
            problems.append(exc.message)
        problems += password_problems(password, self._min_password_length)
        if problems:
            raise InvalidArgument("; ".join(problems))
        now = self._clock.now()
        user = User(
            user_id=uuid.uuid4().hex,
            username=username,
            email=email,
            password_hash=await self._passwords.hash(password),
            role=role,
            blocked=False,
            created_at=now,
            updated_at=now,
        )
        try:
            created = await self._store.create(user)
        except AlreadyExists as exc:
            field = exc.field or "email"
            raise AlreadyExists(f"{field} is already registered", field=field) from None
        await self._activity.record(
            created.user_id, "user.register", created.user_id, username=username, role=role.value
        )
        return created

    async def login(self, email: str, password: str, client_address: str = "") -> LoginResult:
        email = normalize_email(email)
        now = self._clock.now()
        self._throttle.check(email, client_address, now)
        try:
            user: User | None = await self._store.get_by_email(email) if email else None
        except NotFound:
            user = None
        # Always verify, against a dummy hash for an unknown email: both paths cost the same.
        ok = await self._passwords.verify(user.password_hash if user else None, password[:MAX_PASSWORD])
        if user is None or not ok:
            self._throttle.failed(email, client_address, now)
            await self._activity.record_quietly(
                user.user_id if user else SYSTEM, "user.login_failed", email[:MAX_EMAIL], address=client_address
            )
            raise Unauthenticated(BAD_CREDENTIALS)
        self._throttle.succeeded(email, client_address, now)
        if user.blocked:
            raise PermissionDenied("account is blocked")
        if self._passwords.needs_rehash(user.password_hash):
            user = await self._store.set_password_hash(user.user_id, await self._passwords.hash(password), now)
        token = self._tokens.issue(user.user_id, user.role, now)
        return LoginResult(token=token, expires_in=self._tokens.ttl_seconds, user=user)

    async def authenticate(self, token: str) -> Caller:
        """The caller behind a bearer token. The account is read on every call, so blocking a
        user or changing their role takes effect at once, not when their token expires."""
        claims = self._tokens.verify(token)
        try:
            user = await self._store.get(claims.user_id)
        except NotFound:
            raise Unauthenticated("invalid token: account no longer exists") from None
        if user.blocked:
            raise PermissionDenied("account is blocked")
        return Caller(user_id=user.user_id, role=user.role, username=user.username)

    async def get(self, user_id: str) -> User:
        return await self._store.get(user_id)

    async def list(self, flt: UserFilter, page: PageRequest) -> Page[User]:
        if flt.email_prefix:
            flt = replace(flt, email_prefix=normalize_email(flt.email_prefix))
        return await self._store.list(flt, page)

    async def set_blocked(self, actor: Caller, user_id: str, blocked: bool) -> User:
        user = await self._store.get(user_id)
        if user.blocked == blocked:
            return user  # idempotent: nothing changes, nothing is logged
        at = self._clock.now()
        if blocked and user.role is Role.ADMIN and await self._store.count_admins(active_only=True) <= 1:
            raise FailedPrecondition("cannot block the last active admin")
        updated = await self._store.set_blocked(user_id, blocked, at)
        if blocked and user.role is Role.ADMIN and await self._store.count_admins(active_only=True) == 0:
            # Two admins blocked each other at the same moment: undo ours so one stays.
            await self._store.set_blocked(user_id, False, at)
            raise FailedPrecondition("cannot block the last active admin")
        await self._activity.record(actor.actor, "user.block" if blocked else "user.unblock", user_id)
        return updated

    async def ensure_admin(self, email: str, password: str, username: str = "admin") -> User:
        """Create the admin, or promote (and unblock) the existing account: safe on every start.
        An existing account keeps its password; this never overwrites credentials."""
        try:
            user = await self._store.get_by_email(validate_email(email))
        except NotFound:
            try:
                user = await self.register(username, email, password, role=Role.ADMIN)
            except AlreadyExists as exc:
                if exc.field != "email":
                    raise
                user = await self._store.get_by_email(validate_email(email))  # lost a race; fine
            else:
                await self._activity.record(SYSTEM, "user.bootstrap_admin", user.user_id)
                return user
        at = self._clock.now()
        if user.role is not Role.ADMIN:
            user = await self._store.set_role(user.user_id, Role.ADMIN, at)
            await self._activity.record(SYSTEM, "user.promote", user.user_id, role=Role.ADMIN.value)
        if user.blocked:
            user = await self._store.set_blocked(user.user_id, False, at)
            await self._activity.record(SYSTEM, "user.unblock", user.user_id)
        return user
