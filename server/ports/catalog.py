"""The firmware catalog port: the release folders (SPEC section 6) as core reads and blocks them.

Two adapters implement it (server/firmware/local.py, server/firmware/s3.py) over the layout
`python -m firmware_tools` writes. Errors are the domain's own: NotFound (no such release, or
one that is malformed or fails its signature check: such a release is never offered),
InvalidArgument (a platform or version that is not well formed, a bad page token), Unavailable
(the object store can't be reached). Reads may be served from a cache a few seconds old.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.ports.store import Page, PageRequest


@dataclass(frozen=True)
class Release:
    platform: str
    version: str  # normalised semver text, e.g. "1.2.0"
    size: int
    sha256: str
    signature: str  # base64 Ed25519 signature of the raw SHA-256
    secure_version: int
    project_name: str
    idf_version: str
    build_time: datetime | None
    production: bool
    blocked: bool
    blocked_reason: str = ""


@dataclass(frozen=True)
class BlockedRelease:
    version: str
    reason: str
    time: str  # as written in blocked_versions.json (RFC 3339 text, may be empty)


@dataclass(frozen=True)
class DownloadUrl:
    url: str
    expires_at: datetime


class FirmwareCatalog(Protocol):
    async def list_releases(self, platform: str, page: PageRequest) -> Page[Release]:
        """Valid releases of the platform, newest version first (semver precedence)."""
        ...

    async def get_release(self, platform: str, version: str) -> Release: ...

    async def production_version(self, platform: str) -> str | None:
        """production/version.txt, when it names a valid release; None otherwise."""
        ...

    async def blocked(self, platform: str) -> list[BlockedRelease]: ...

    async def set_blocked(self, platform: str, version: str, blocked: bool, reason: str, at: datetime) -> Release:
        """Add to / remove from rollback/blocked_versions.json (idempotent). The caller decides
        whether blocking is allowed (e.g. not the production version)."""
        ...

    async def download_url(self, platform: str, version: str, ttl_seconds: int) -> DownloadUrl:
        """A short-lived URL of releases/v<version>/firmware.bin (immutable, unlike production/)."""
        ...

    async def close(self) -> None: ...
