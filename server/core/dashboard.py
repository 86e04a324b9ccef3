"""The fleet overview: a page of the caller's devices (an admin's: every device), each with its
latest OTA status, and totals computed by the store (not from the page).

Presence is shown as the PresenceView allows: while it is not known for every device, the online
total counts only the devices heard since the broker connection came back (a walk over the
stored-online devices, done only then)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from server.core.caller import Caller
from server.core.model import OtaJobStatus
from server.core.ota_status import LatestOtaStatus
from server.core.paging import pages
from server.core.presence_view import PresenceView, ShownDevice
from server.ports.store import DeviceFilter, DeviceSummary, Page, PageRequest, Store


@dataclass(frozen=True)
class DashboardView:
    devices: Page[ShownDevice]
    ota_status: dict[str, OtaJobStatus]  # device id -> status of its latest job, if any
    totals: DeviceSummary
    by_ota_status: dict[str, int] = field(default_factory=dict)  # latest job's status -> devices
    presence_known: bool = True


# by_firmware's key for devices that haven't reported a version yet (the store says "").
UNREPORTED_FIRMWARE = "unknown"


class Dashboard:
    def __init__(self, store: Store, ota_status: LatestOtaStatus, presence: PresenceView) -> None:
        self._store = store
        self._ota_status = ota_status
        self._presence = presence

    async def view(self, caller: Caller, page: PageRequest) -> DashboardView:
        owner = None if caller.is_admin else caller.user_id
        devices = await self._store.devices.list(DeviceFilter(owner_id=owner), page)
        ota_status = await self._ota_status.of(devices.items)
        totals = await self._store.devices.summary(owner)
        by_firmware: dict[str, int] = {}
        for version, count in totals.by_firmware.items():
            key = version or UNREPORTED_FIRMWARE
            by_firmware[key] = by_firmware.get(key, 0) + count
        totals = replace(totals, by_firmware=by_firmware)
        known = self._presence.all_known
        if not known:
            online = await self._known_online(owner)
            totals = replace(totals, online=online, offline=totals.devices - online)
        by_ota = await self._by_ota_status(owner)
        return DashboardView(self._presence.page(devices, None), ota_status, totals, by_ota, known)

    async def _known_online(self, owner: str | None) -> int:
        count = 0
        async for page in pages(partial(self._store.devices.list, DeviceFilter(owner_id=owner, online=True))):
            count += sum(1 for d in page.items if self._presence.known(d))
        return count

    async def _by_ota_status(self, owner: str | None) -> dict[str, int]:
        """Devices by the status of their latest OTA job, over all of the caller's devices (not
        the page). The store has no aggregate for it yet, so this walks the devices a full page
        (500) at a time: one device page and one job query per 500 devices."""
        counts: dict[str, int] = {}
        async for page in pages(partial(self._store.devices.list, DeviceFilter(owner_id=owner))):
            for status in (await self._ota_status.of(page.items)).values():
                counts[status.value] = counts.get(status.value, 0) + 1
        return counts
