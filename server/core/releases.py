"""Releases as core sees them: the version helpers, the one "latest good release" rule that OTA
and rollouts share, and the release catalog API (list, read; admins block and unblock).

The latest good release of a platform is its production version (production/version.txt)
unless that is blocked; then it is the newest release *below* production that is not blocked
(SPEC section 6: a blocked version is never offered, and a device running one is offered the
latest good version). Never one above production: a release built but not promoted has not
been approved for the fleet. Production can only end up blocked by a hand-edited (or seed-era)
blocked_versions.json, since both the API and firmware_tools refuse to block it on its own; the
fallback keeps devices on a blocked production version from being stranded meanwhile. OTA
checks, OTA starts without a version and rollouts without a version all resolve through
`release_to_offer`, so they can never disagree.

Blocking follows firmware_tools' rule: the production version can't be blocked on its own,
because the fleet would silently fall back to an older release. The release engineer blocks it
and promotes a replacement in one step with the tool, which also checks the replacement's
anti-rollback version.
"""

from __future__ import annotations

from functools import partial

from firmware_tools.semver import InvalidVersionError, Version, parse_version
from server.core.activity import ActivityLog
from server.core.caller import Caller
from server.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from server.core.paging import find
from server.ports.catalog import FirmwareCatalog, Release
from server.ports.clock import Clock
from server.ports.store import Page, PageRequest

MAX_REASON = 256

# ---- version helpers -------------------------------------------------------------------------


def version_or_none(text: str) -> Version | None:
    try:
        return parse_version(text)
    except InvalidVersionError:
        return None


def same_version(a: str, b: str) -> bool:
    """Semver equality ("v1.2.0" is "1.2.0"); plain text equality when either isn't semver."""
    pa, pb = version_or_none(a), version_or_none(b)
    return pa == pb if pa is not None and pb is not None else a == b


def require_version(name: str, text: str) -> Version:
    parsed = version_or_none(text)
    if parsed is None:
        raise InvalidArgument(f"{name} {text!r} is not a semantic version (e.g. 1.2.0)")
    return parsed


# ---- the latest good release ---------------------------------------------------------------


async def latest_good(catalog: FirmwareCatalog, platform: str) -> Release | None:
    """The release to offer the platform's devices (see the module docstring); None when there
    is none."""
    try:
        return await _latest_good(catalog, platform)
    except FailedPrecondition:
        return None


async def release_to_offer(catalog: FirmwareCatalog, platform: str, version: str = "") -> Release:
    """What an OTA job or a rollout sends: `version` when one is asked for (NotFound when it is
    not in the catalog, FailedPrecondition when it is blocked), else the latest good release
    (FailedPrecondition naming why there is none)."""
    if not version:
        return await _latest_good(catalog, platform)
    require_version("version", version)
    release = await catalog.get_release(platform, version)
    if release.blocked:
        raise FailedPrecondition(
            f"version {release.version} is blocked ({release.blocked_reason or 'no reason given'})"
        )
    return release


async def is_blocked(catalog: FirmwareCatalog, platform: str, version: str) -> bool:
    """Whether `version` is on the platform's block list; it need not be in the catalog (a
    device may run a release that was since removed)."""
    wanted = version_or_none(version)
    if wanted is None:
        return False
    return any(version_or_none(b.version) == wanted for b in await catalog.blocked(platform))


async def _latest_good(catalog: FirmwareCatalog, platform: str) -> Release:
    production = await catalog.production_version(platform)
    if production is None:
        raise FailedPrecondition(f"no production release for platform {platform}")
    current = await catalog.get_release(platform, production)
    if not current.blocked:
        return current
    ceiling = version_or_none(production)

    def good_and_older(release: Release) -> bool:
        parsed = version_or_none(release.version)
        return not release.blocked and parsed is not None and ceiling is not None and parsed < ceiling

    # Newest first, so the first match is the newest good release below production.
    fallback = await find(partial(catalog.list_releases, platform), good_and_older)
    if fallback is not None:
        return fallback
    raise FailedPrecondition(
        f"no good release for platform {platform}: production {production} is blocked and no older release is unblocked"
    )


# ---- the catalog API -----------------------------------------------------------------------


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
