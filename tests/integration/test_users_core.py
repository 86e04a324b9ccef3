"""core.users against the real embedded store: the rules a user of the API relies on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from server.auth.passwords import Argon2Params, Passwords
from server.auth.tokens import Tokens
from server.core.activity import ActivityLog
from server.core.caller import Caller
from server.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated
from server.core.model import Role
from server.core.users import Users
from server.ports.clock import ManualClock
from server.ports.store import ActivityFilter, PageRequest, Store

FAST = Argon2Params(time_cost=1, memory_cost_kib=8 * 1024, parallelism=1)
PASSWORD = "correct horse battery"


def make_users(store: Store, params: Argon2Params = FAST) -> Users:
    # Tokens are checked against the wall clock (PyJWT), so the manual clock starts now.
    clock = ManualClock(datetime.now(UTC))
    tokens = Tokens("k" * 40, "iss", "aud", 3600)
    return Users(store.users, Passwords(params), tokens, ActivityLog(store.activity, clock), clock)


async def test_emails_are_normalised_so_case_variants_collide(store: Store) -> None:
    users = make_users(store)
    user = await users.register("alice", "  Alice@Example.COM ", PASSWORD)
    assert user.email == "alice@example.com"
    with pytest.raises(AlreadyExists) as info:
        await users.register("alice2", "ALICE@example.com", PASSWORD)
    assert info.value.field == "email"
    with pytest.raises(AlreadyExists) as info:
        await users.register("alice", "other@example.com", PASSWORD)
    assert info.value.field == "username"
    assert (await users.login("ALICE@EXAMPLE.COM", PASSWORD)).user.user_id == user.user_id


async def test_every_policy_violation_is_named_in_one_message(store: Store) -> None:
    with pytest.raises(InvalidArgument) as info:
        await make_users(store).register("a", "not-an-email", "short")
    message = info.value.message
    assert "username must be 3-32 characters" in message
    assert "email is not a valid address" in message
    assert "at least 8 characters" in message
    with pytest.raises(InvalidArgument, match="at most 1024"):
        await make_users(store).register("bob", "bob@example.com", "x" * 2000)


async def test_login_rehashes_when_parameters_are_raised(store: Store) -> None:
    await make_users(store, FAST).register("carol", "carol@example.com", PASSWORD)
    before = (await store.users.get_by_email("carol@example.com")).password_hash
    stronger = Argon2Params(time_cost=2, memory_cost_kib=16 * 1024, parallelism=1)
    await make_users(store, stronger).login("carol@example.com", PASSWORD)
    after = (await store.users.get_by_email("carol@example.com")).password_hash
    assert after != before and "m=16384,t=2" in after and "m=8192,t=1" in before
    # The new hash still verifies, and an unchanged policy leaves it alone.
    await make_users(store, stronger).login("carol@example.com", PASSWORD)
    assert (await store.users.get_by_email("carol@example.com")).password_hash == after


async def test_unknown_email_and_wrong_password_fail_the_same_way(store: Store) -> None:
    users = make_users(store)
    await users.register("dave", "dave@example.com", PASSWORD)
    messages = []
    for email, password in (("dave@example.com", "wrong password"), ("nobody@example.com", PASSWORD)):
        with pytest.raises(Unauthenticated) as info:
            await users.login(email, password)
        messages.append(info.value.message)
    assert messages[0] == messages[1] == "invalid email or password"
    failed = await store.activity.list(ActivityFilter(action="user.login_failed"), PageRequest())
    assert {e.target for e in failed.items} == {"dave@example.com", "nobody@example.com"}


async def test_blocking_cuts_off_tokens_and_logins_and_unblocking_restores_them(store: Store) -> None:
    users = make_users(store)
    admin = await users.register("root", "root@example.com", PASSWORD, role=Role.ADMIN)
    erin = await users.register("erin", "erin@example.com", PASSWORD)
    token = (await users.login("erin@example.com", PASSWORD)).token
    root = Caller(admin.user_id, Role.ADMIN)
    await users.set_blocked(root, erin.user_id, True)
    await users.set_blocked(root, erin.user_id, True)  # idempotent
    with pytest.raises(PermissionDenied):
        await users.authenticate(token)
    with pytest.raises(PermissionDenied):
        await users.login("erin@example.com", PASSWORD)
    await users.set_blocked(root, erin.user_id, False)
    assert (await users.authenticate(token)).user_id == erin.user_id
    actions = [e.action for e in (await store.activity.list(ActivityFilter(target=erin.user_id), PageRequest())).items]
    assert actions.count("user.block") == 1 and actions.count("user.unblock") == 1


async def test_the_last_active_admin_cannot_be_blocked(store: Store) -> None:
    users = make_users(store)
    a = await users.register("root", "root@example.com", PASSWORD, role=Role.ADMIN)
    b = await users.register("root2", "root2@example.com", PASSWORD, role=Role.ADMIN)
    await users.set_blocked(Caller(a.user_id, Role.ADMIN), b.user_id, True)
    with pytest.raises(FailedPrecondition, match="last active admin"):
        await users.set_blocked(Caller(a.user_id, Role.ADMIN), a.user_id, True)


async def test_admins_blocking_each_other_at_once_leave_one_standing(store: Store) -> None:
    users = make_users(store)
    a = await users.register("root", "root@example.com", PASSWORD, role=Role.ADMIN)
    b = await users.register("root2", "root2@example.com", PASSWORD, role=Role.ADMIN)
    await asyncio.gather(
        users.set_blocked(Caller(a.user_id, Role.ADMIN), b.user_id, True),
        users.set_blocked(Caller(b.user_id, Role.ADMIN), a.user_id, True),
        return_exceptions=True,
    )
    assert await store.users.count_admins(active_only=True) >= 1


async def test_ensure_admin_creates_then_promotes_idempotently(store: Store) -> None:
    users = make_users(store)
    first = await users.ensure_admin("Boss@Example.com", PASSWORD, "boss")
    again = await users.ensure_admin("boss@example.com", "another password", "boss")
    assert first.user_id == again.user_id and again.role is Role.ADMIN
    # An existing account keeps its password when promoted.
    frank = await users.register("frank", "frank@example.com", PASSWORD)
    await users.set_blocked(Caller(first.user_id, Role.ADMIN), frank.user_id, True)
    promoted = await users.ensure_admin("frank@example.com", "not used", "ignored")
    assert (promoted.user_id, promoted.role, promoted.blocked) == (frank.user_id, Role.ADMIN, False)
    await users.login("frank@example.com", PASSWORD)
