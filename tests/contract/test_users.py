"""Users: uniqueness, lookups, updates, filters, pagination."""

from __future__ import annotations

import asyncio

import pytest

from server.core.errors import AlreadyExists, InvalidArgument, NotFound
from server.core.model import Role
from server.ports.store import MAX_PAGE_SIZE, PageRequest, Store, UserFilter
from tests.support.factory import Factory


async def test_create_and_get(store: Store, f: Factory) -> None:
    user = await store.users.create(f.user())
    assert await store.users.get(user.user_id) == user
    assert await store.users.get_by_email(user.email) == user
    assert await store.users.get_by_username(user.username) == user


async def test_missing_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.users.get("nope")
    with pytest.raises(NotFound):
        await store.users.get_by_email("nope@example.com")
    with pytest.raises(NotFound):
        await store.users.set_blocked("nope", True, Factory().tick())


async def test_duplicate_email_and_username(store: Store, f: Factory) -> None:
    first = await store.users.create(f.user())
    with pytest.raises(AlreadyExists) as email:
        await store.users.create(f.user(email=first.email))
    assert email.value.field == "email"
    with pytest.raises(AlreadyExists) as username:
        await store.users.create(f.user(username=first.username))
    assert username.value.field == "username"
    with pytest.raises(AlreadyExists):
        await store.users.create(f.user(user_id=first.user_id))


async def test_concurrent_duplicate_registrations_have_one_winner(store: Store, f: Factory) -> None:
    contenders = [f.user(email="race@example.com") for _ in range(25)]
    results = await asyncio.gather(*(store.users.create(u) for u in contenders), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, AlreadyExists) and e.field == "email" for e in losers)
    assert await store.users.get_by_email("race@example.com") == winners[0]


async def test_updates(store: Store, f: Factory) -> None:
    user = await store.users.create(f.user())
    at = f.tick()
    blocked = await store.users.set_blocked(user.user_id, True, at)
    assert blocked.blocked and blocked.updated_at == at
    again = await store.users.set_blocked(user.user_id, True, at)  # idempotent
    assert again == blocked
    admin = await store.users.set_role(user.user_id, Role.ADMIN, at)
    assert admin.role is Role.ADMIN
    rehashed = await store.users.set_password_hash(user.user_id, "new-hash", at)
    assert rehashed.password_hash == "new-hash"
    assert await store.users.get(user.user_id) == rehashed


async def test_count_admins(store: Store, f: Factory) -> None:
    await store.users.create(f.user(role=Role.ADMIN))
    await store.users.create(f.user(role=Role.ADMIN, blocked=True))
    await store.users.create(f.user())
    assert await store.users.count_admins() == 1
    assert await store.users.count_admins(active_only=False) == 2


async def test_filters(store: Store, f: Factory) -> None:
    a = await store.users.create(f.user(email="alice@example.com", role=Role.ADMIN))
    b = await store.users.create(f.user(email="bob@example.com", blocked=True))
    c = await store.users.create(f.user(email="alina@example.org"))
    page = PageRequest(size=10)
    assert (await store.users.list(UserFilter(), page)).items == [a, b, c]
    assert (await store.users.list(UserFilter(blocked=True), page)).items == [b]
    assert (await store.users.list(UserFilter(blocked=False), page)).items == [a, c]
    assert (await store.users.list(UserFilter(role=Role.ADMIN), page)).items == [a]
    assert (await store.users.list(UserFilter(email_prefix="ali"), page)).items == [a, c]
    assert (await store.users.list(UserFilter(email_prefix="ALI"), page)).items == []


async def test_pagination_walks_everything_once(store: Store, f: Factory) -> None:
    users = [await store.users.create(f.user()) for _ in range(23)]
    seen = []
    token = ""
    pages = 0
    while True:
        page = await store.users.list(UserFilter(), PageRequest(size=5, token=token))
        seen += page.items
        pages += 1
        assert len(page.items) <= 5
        token = page.next_page_token
        if not token:
            break
    assert seen == users
    assert pages == 5


async def test_page_size_rules(store: Store, f: Factory) -> None:
    for _ in range(3):
        await store.users.create(f.user())
    assert len((await store.users.list(UserFilter(), PageRequest(size=0))).items) == 3
    assert PageRequest(size=10_000).limit == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        await store.users.list(UserFilter(), PageRequest(size=-1))


@pytest.mark.parametrize("token", ["garbage!!", "bm9wZQ", "WyJkZXZpY2VzIiwxLCJ4Il0"])
async def test_malformed_token_is_invalid_argument(store: Store, token: str) -> None:
    # the last one is a well-formed token for another list (devices)
    with pytest.raises(InvalidArgument):
        await store.users.list(UserFilter(), PageRequest(size=5, token=token))
