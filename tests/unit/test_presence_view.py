"""The rules of honest presence (server/core/presence_view.py), on a clock moved by hand."""

from __future__ import annotations

from dataclasses import replace

from server.core.presence_view import PresenceView
from server.ports.clock import ManualClock
from server.ports.store import DeviceFilter, Page
from tests.support.factory import Factory

RELEARN = 10.0


def setup() -> tuple[ManualClock, PresenceView, Factory]:
    clock = ManualClock()
    return clock, PresenceView(clock, RELEARN), Factory()


def test_nothing_is_known_before_the_link_first_comes_up() -> None:
    clock, view, f = setup()
    device = f.device(online=True, last_seen=clock.now())
    shown = view.show(device)
    assert (shown.device.online, shown.presence_known) == (False, False)
    assert not view.all_known


def test_after_the_link_comes_up_only_devices_heard_since_are_known_until_the_window_passes() -> None:
    clock, view, f = setup()
    stale = f.device(online=True, last_seen=clock.now())
    clock.advance(1)
    view.link_up()
    clock.advance(1)
    heard = f.device(online=True, last_seen=clock.now())
    assert (view.show(stale).device.online, view.show(stale).presence_known) == (False, False)
    assert (view.show(heard).device.online, view.show(heard).presence_known) == (True, True)
    clock.advance(RELEARN)
    assert view.all_known and view.show(stale).device.online and view.show(stale).presence_known


def test_link_down_forgets_everything_again() -> None:
    clock, view, f = setup()
    view.link_up()
    clock.advance(RELEARN)
    view.link_down()
    device = f.device(online=True, last_seen=clock.now())
    assert (view.show(device).device.online, view.show(device).presence_known) == (False, False)


def test_without_a_broker_the_store_is_the_truth() -> None:
    clock = ManualClock()
    view = PresenceView(clock, RELEARN, tracking=False)
    device = Factory().device(online=True, last_seen=None)
    assert view.all_known and view.show(device).device.online


def test_lists_filter_by_presence_as_shown() -> None:
    clock, view, f = setup()
    old = f.device(online=True, last_seen=clock.now())
    clock.advance(1)
    view.link_up()
    clock.advance(1)
    fresh = f.device(online=True, last_seen=clock.now())
    off = f.device(online=False)
    # Stored online but unknown counts as offline: the store must not be asked for online=false only.
    assert view.store_filter(DeviceFilter(online=False)).online is None
    assert view.store_filter(DeviceFilter(online=True)).online is True
    page = Page([old, fresh, off], "next")
    assert [s.device.device_id for s in view.page(page, True).items] == [fresh.device_id]
    assert [s.device.device_id for s in view.page(page, False).items] == [old.device_id, off.device_id]
    assert view.page(page, None).next_page_token == "next"
    clock.advance(RELEARN)
    assert view.store_filter(DeviceFilter(online=False)).online is False
    assert [s.device.online for s in view.page(Page([replace(old)]), None).items] == [True]
