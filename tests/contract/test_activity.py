"""The activity log: append, filters, newest first, pages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.core.errors import AlreadyExists
from server.ports.store import ActivityFilter, PageRequest, Store
from tests.support.factory import Factory


async def test_append_and_list_newest_first(store: Store, f: Factory) -> None:
    entries = [f.activity(actor="u-1" if i % 2 else "u-2") for i in range(7)]
    for e in entries:
        await store.activity.append(e)
    page = await store.activity.list(ActivityFilter(), PageRequest(size=100))
    assert page.items == entries[::-1]
    assert not page.next_page_token
    by_actor = await store.activity.list(ActivityFilter(actor="u-1"), PageRequest(size=100))
    assert by_actor.items == [e for e in entries[::-1] if e.actor == "u-1"]
    window = ActivityFilter(since=entries[2].time, until=entries[5].time)
    assert (await store.activity.list(window, PageRequest())).items == entries[2:5][::-1]
    with pytest.raises(AlreadyExists):
        await store.activity.append(entries[0])


async def test_filters_by_target_and_action(store: Store, f: Factory) -> None:
    a = f.activity(action="ota.start", target="esp32-1")
    b = f.activity(action="device.block", target="esp32-1")
    c = f.activity(action="ota.start", target="esp32-2")
    for e in (a, b, c):
        await store.activity.append(e)
    got = await store.activity.list(ActivityFilter(target="esp32-1"), PageRequest())
    assert got.items == [b, a]
    got = await store.activity.list(ActivityFilter(action="ota.start"), PageRequest())
    assert got.items == [c, a]


async def test_same_time_entries_page_without_loss(store: Store, f: Factory) -> None:
    at = f.tick()
    entries = [f.activity(time=at, entry_id=f"e-{i:02d}") for i in range(9)]
    entries.append(f.activity(time=at - timedelta(seconds=1)))
    for e in entries:
        await store.activity.append(e)
    walked = []
    token = ""
    while True:
        p = await store.activity.list(ActivityFilter(), PageRequest(size=4, token=token))
        walked += p.items
        token = p.next_page_token
        if not token:
            break
    assert [e.entry_id for e in walked] == [f"e-{i:02d}" for i in range(8, -1, -1)] + [entries[-1].entry_id]
