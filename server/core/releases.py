"""The release catalog as the API shows it: list and read releases; admins block and unblock.

Blocking follows firmware_tools' rule: the production version can't be blocked on its own,
because devices would then be offered nothing (or an arbitrary older release). The release
engineer blocks it and promotes a replacement in one step with the tool, which also checks the
replacement's anti-rollback version.
"""

from __future__ import annotations

from server.core.activity import ActivityLog
from server.core.caller import Caller
from server.core.errors import FailedPrecondition, PermissionDenied
from server.core.ota_rules import same_version
from server.ports.catalog import FirmwareCatalog, Release
from server.ports.clock import Clock
from server.ports.store import Page, PageRequest

MAX_REASON = 256


class Releases:
    def __init__(self, catalog: FirmwareCatalog, activity: ActivityLog, clock: Clock) -> None:
        self._catalog = catalog
        self._activity = activity
        self._clock = clock

    async def list(self, platform: str, page: PageRequest) -> Page[Release]:
        return await self._catalog.list_releases(platform, page)

    async def get(self, platform: str, version: str) -> Release:
        return await self._catalog.get_release(platform, version)

    async def set_blocked(self, caller: Caller, platform: str, version: str, blocked: bool, reason: str) -> Release:
        if not caller.is_admin:
            raise PermissionDenied("only an admin may block or unblock a release")
        release = await self._catalog.get_release(platform, version)
        if blocked and not release.blocked:
            production = await self._catalog.production_version(platform)
            if production is not None and same_version(production, release.version):
                raise FailedPrecondition(
                    f"refusing to block {release.version}: it is the production version of {platform}; "
                    f"block it and promote a replacement in one step with `python -m firmware_tools block "
                    f"{release.version} --reason TEXT --promote VERSION`, then publish"
                )
        if release.blocked == blocked:
            return release  # idempotent: nothing written, nothing logged
        reason = (reason.strip() or f"blocked by {caller.username or caller.user_id} via the API")[:MAX_REASON]
        updated = await self._catalog.set_blocked(platform, release.version, blocked, reason, self._clock.now())
        await self._activity.record(
            caller.actor,
            "release.block" if blocked else "release.unblock",
            f"{platform}/{release.version}",
            reason=reason if blocked else None,
        )
        return updated
