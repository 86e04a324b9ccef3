"""Honest presence: what this replica may say about "online" given how well it sees the broker.

The stored `online` flag is what devices last told us. It is only as good as our link to the
broker: while the bridge is disconnected, no Last Will can reach us, so a device that vanished
still reads online; and after the link comes back (a broker restart, a partition healing, this
process starting) the flag still holds the state from before, for devices that may be long gone.
Retained presence does not settle it either: a broker that restarted from its persistence file
replays the retained `online` of a device that never came back (its Last Will died with the
broker), so a replayed `online` is not taken as proof.

So a device's presence is *known* only while the link is up and either the device has been
heard since the link came up (its `last_seen`, which every heartbeat and online transition
moves, is newer, whichever replica ingested it) or the link has been up for the re-learn
window: one offline timeout plus a sweep, after which the offline sweep has turned every device
that stayed silent offline, and the store is the truth again. While presence is unknown the API
says `online=false` and `presenceKnown=false` rather than a stale `online=true`.

The view is per replica (each has its own link); the store is not written, so one replica
losing its broker connection does not flip devices that other replicas still hear.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from server.core.model import Device
from server.ports.clock import Clock
from server.ports.store import DeviceFilter, Page


@dataclass(frozen=True)
class ShownDevice:
    device: Device  # with online=False where presence is unknown
    presence_known: bool


class PresenceView:
    def __init__(self, clock: Clock, relearn_seconds: float, *, tracking: bool = True) -> None:
        """`tracking=False` (no broker configured): the store is the only source; always known."""
        self._clock = clock
        self._relearn = timedelta(seconds=relearn_seconds)
        self._tracking = tracking
        self._up_since: datetime | None = None

    def link_up(self) -> None:
        self._up_since = self._clock.now()

    def link_down(self) -> None:
        self._up_since = None

    @property
    def all_known(self) -> bool:
        """True when the stored presence of every device can be shown as it is."""
        if not self._tracking:
            return True
        return self._up_since is not None and self._clock.now() - self._up_since >= self._relearn

    def known(self, device: Device) -> bool:
        if self.all_known:
            return True
        since = self._up_since
        return since is not None and device.last_seen is not None and device.last_seen >= since

    def show(self, device: Device) -> ShownDevice:
        known = self.known(device)
        if not known and device.online:
            device = replace(device, online=False)
        return ShownDevice(device, known)

    def store_filter(self, flt: DeviceFilter) -> DeviceFilter:
        """The filter to ask the store with, for a list that `page()` then filters as shown.

        While presence is not all known, "offline" as shown includes devices stored online
        whose presence is unknown, so an online=false query must not be narrowed in the store.
        """
        if flt.online is False and not self.all_known:
            return replace(flt, online=None)
        return flt

    def page(self, page: Page[Device], online: bool | None) -> Page[ShownDevice]:
        """The store's page as shown, keeping only devices that match `online` as shown.

        Filtering after the store may make a page shorter than asked; its token still continues
        the listing, so a client that follows tokens sees every match exactly once.
        """
        shown = [self.show(d) for d in page.items]
        if online is not None:
            shown = [s for s in shown if s.device.online is online]
        return Page(shown, page.next_page_token)

    async def listed(
        self, fetch: Callable[[DeviceFilter], Awaitable[Page[Device]]], flt: DeviceFilter
    ) -> Page[ShownDevice]:
        """One listing as shown: `fetch` reads the store with the filter rewritten for presence
        (see store_filter), and the page keeps only what matches `flt.online` as shown."""
        return self.page(await fetch(self.store_filter(flt)), flt.online)
