"""What both catalog adapters share: reading the release layout into a cached snapshot.

The objects are read, listed and written through firmware_tools' own ReleaseStore (LocalStore
for a folder, S3Store for a bucket), the same code the release tool publishes with; the adapters
add only how to sign a download URL. This module reads the layout with firmware_tools' own parsers
(so the server and the release tool can never disagree on the format) and keeps, per platform,
a snapshot that is at most `cache_seconds` old: a heartbeat or a CheckUpdate never costs a LIST.
Release folders are immutable, so a parsed metadata.json is kept for good; only the listing,
version.txt and the block list are re-read.

A release is offered only when its metadata.json parses, names the folder's own platform and
version, its firmware.bin is listed beside it, and (with a public key configured) its Ed25519
signature verifies. Anything else is logged and left out, never offered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_tools.release import (
    FIRMWARE,
    METADATA,
    VERSION_TXT,
    BlockedVersion,
    ReleaseError,
    ReleaseMetadata,
    blocked_key,
    check_platform,
    dump_blocked,
    find_blocked,
    parse_blocked,
    production_key,
    release_key,
)
from firmware_tools.semver import InvalidVersionError, Version, parse_version
from firmware_tools.signing import verify_signature
from firmware_tools.storage import ReleaseStore, StoreError
from server.core.errors import InvalidArgument, NotFound, Unavailable
from server.ports.catalog import BlockedRelease, DownloadUrl, Release
from server.ports.store import Page, PageRequest

log = logging.getLogger("server.firmware")

DEFAULT_CACHE_SECONDS = 5.0
T = TypeVar("T")


def parse_platform(platform: str) -> str:
    try:
        return check_platform(platform)
    except ReleaseError as exc:
        raise InvalidArgument(exc.reason) from None


def parse_release_version(version: str) -> Version:
    try:
        return parse_version(version)
    except InvalidVersionError as exc:
        raise InvalidArgument(str(exc)) from None


@dataclass
class _Snapshot:
    releases: dict[Version, ReleaseMetadata]  # valid ones only
    production: Version | None
    blocked: list[BlockedVersion]
    expires: float = 0.0


class ObjectCatalog:
    """The FirmwareCatalog port over a ReleaseStore; adapters add download_url and close."""

    def __init__(
        self,
        store: ReleaseStore,
        public_key: Ed25519PublicKey | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.public_key = public_key
        self.cache_seconds = cache_seconds
        self._snapshots: dict[str, _Snapshot] = {}
        self._metadata: dict[tuple[str, Version], ReleaseMetadata] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # (platform, version) -> why it was refused; logged once per reason, not per refresh.
        self._refused: dict[tuple[str, Version], str] = {}

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking store call in a worker thread. A store that fails (no connection, access
        denied, no such bucket, a full disk) is Unavailable with the reason: callers answer 503
        and may retry; a missing object is not an error but None."""
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreError as exc:
            raise Unavailable(f"firmware store: {exc}") from None

    # ---- the snapshot --------------------------------------------------------------------

    async def _snapshot(self, platform: str) -> _Snapshot:
        platform = parse_platform(platform)
        snap = self._snapshots.get(platform)
        if snap is not None and snap.expires > time.monotonic():
            return snap
        lock = self._locks.setdefault(platform, asyncio.Lock())
        async with lock:  # one refresh per platform at a time; the others wait for it
            snap = self._snapshots.get(platform)
            if snap is not None and snap.expires > time.monotonic():
                return snap
            snap = await self._load(platform)
            snap.expires = time.monotonic() + self.cache_seconds
            self._snapshots[platform] = snap
            return snap

    def invalidate(self, platform: str) -> None:
        self._snapshots.pop(platform, None)

    async def _load(self, platform: str) -> _Snapshot:
        keys = set(await self._io(self.store.list, f"{platform}/releases/"))
        releases: dict[Version, ReleaseMetadata] = {}
        for key in sorted(keys):
            parts = key.split("/")
            if len(parts) != 4 or parts[3] != METADATA or not parts[2].startswith("v"):
                continue
            try:
                version = parse_version(parts[2])
            except InvalidVersionError:
                continue
            metadata = await self._release_metadata(platform, version, keys)
            if metadata is not None:
                releases[version] = metadata
        production: Version | None = None
        raw = await self._io(self.store.read, production_key(platform, VERSION_TXT))
        if raw is not None:
            try:
                production = parse_version(raw.decode("utf-8", "replace").strip())
            except InvalidVersionError:
                log.warning("production/version.txt is not a version", extra={"platform": platform})
        try:
            blocked = parse_blocked(await self._io(self.store.read, blocked_key(platform)))
        except ReleaseError as exc:
            # A damaged block list must not unblock anything: refuse to offer any release.
            log.error("blocked_versions.json unreadable; offering nothing", extra={"platform": platform})
            blocked = [BlockedVersion(str(v), f"block list unreadable: {exc.reason}", "") for v in releases]
        if production is not None and production not in releases:
            production = None  # devices download releases/v<version>/, so it must be there and valid
        return _Snapshot(releases, production, blocked)

    async def _release_metadata(self, platform: str, version: Version, keys: set[str]) -> ReleaseMetadata | None:
        cached = self._metadata.get((platform, version))
        if cached is not None:
            return cached
        problem = ""
        metadata: ReleaseMetadata | None = None
        if release_key(platform, version, FIRMWARE) not in keys:
            problem = "firmware.bin is missing"
        else:
            raw = await self._io(self.store.read, release_key(platform, version, METADATA))
            try:
                metadata = ReleaseMetadata.from_json(raw or b"")
            except ReleaseError as exc:
                problem = exc.reason
            else:
                if metadata.platform != platform or metadata.parsed_version != version:
                    problem = f"metadata.json names {metadata.platform} {metadata.version}"
                elif self.public_key is not None and not verify_signature(metadata, self.public_key):
                    problem = "the signature does not verify with FIRMWARE_PUBLIC_KEY"
        if problem:
            if self._refused.get((platform, version)) != problem:
                self._refused[(platform, version)] = problem
                log.warning(
                    "release refused: never offered",
                    extra={"platform": platform, "version": str(version), "reason": problem},
                )
            return None
        assert metadata is not None
        self._metadata[(platform, version)] = metadata
        return metadata

    # ---- the port ------------------------------------------------------------------------

    def _release(self, snap: _Snapshot, metadata: ReleaseMetadata) -> Release:
        version = metadata.parsed_version
        entry = find_blocked(snap.blocked, version)
        build_time: datetime | None = None
        if metadata.build_time:
            try:
                build_time = datetime.fromisoformat(metadata.build_time.replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                build_time = None
        return Release(
            platform=metadata.platform,
            version=str(version),
            size=metadata.size,
            sha256=metadata.sha256,
            signature=metadata.signature,
            secure_version=metadata.secure_version,
            project_name=metadata.project_name,
            idf_version=metadata.idf_version,
            build_time=build_time,
            production=snap.production == version,
            blocked=entry is not None,
            blocked_reason=entry.reason if entry is not None else "",
        )

    async def list_releases(self, platform: str, page: PageRequest) -> Page[Release]:
        snap = await self._snapshot(platform)
        versions = sorted(snap.releases, reverse=True)
        if page.token:
            after = _decode_token(page.token)
            versions = [v for v in versions if v < after]
        limit = page.limit
        chosen = versions[:limit]
        token = _encode_token(chosen[-1]) if len(versions) > limit else ""
        return Page([self._release(snap, snap.releases[v]) for v in chosen], token)

    async def get_release(self, platform: str, version: str) -> Release:
        wanted = parse_release_version(version)
        snap = await self._snapshot(platform)
        metadata = snap.releases.get(wanted)
        if metadata is None:
            raise NotFound(f"release {wanted} of {platform} not found")
        return self._release(snap, metadata)

    async def production_version(self, platform: str) -> str | None:
        snap = await self._snapshot(platform)
        return str(snap.production) if snap.production is not None else None

    async def blocked(self, platform: str) -> list[BlockedRelease]:
        snap = await self._snapshot(platform)
        return [BlockedRelease(e.version, e.reason, e.time) for e in snap.blocked]

    async def set_blocked(self, platform: str, version: str, blocked: bool, reason: str, at: datetime) -> Release:
        platform = parse_platform(platform)
        wanted = parse_release_version(version)
        await self.get_release(platform, str(wanted))  # NotFound before writing anything
        # Read the list fresh (not the cache): a release engineer may have just changed it.
        entries = parse_blocked(await self._io(self.store.read, blocked_key(platform)))
        existing = find_blocked(entries, wanted)
        if blocked and existing is None:
            time_text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            entries = [*entries, BlockedVersion(str(wanted), reason, time_text)]
            await self._io(self.store.write, blocked_key(platform), dump_blocked(entries))
        elif not blocked and existing is not None:
            entries = [e for e in entries if e is not existing]
            await self._io(self.store.write, blocked_key(platform), dump_blocked(entries))
        self.invalidate(platform)
        return await self.get_release(platform, str(wanted))

    async def firmware_key(self, platform: str, version: str) -> str:
        """The immutable object key of an offered release's firmware (NotFound otherwise)."""
        release = await self.get_release(platform, version)
        return release_key(release.platform, parse_version(release.version), FIRMWARE)

    async def download_url(self, platform: str, version: str, ttl_seconds: int) -> DownloadUrl:
        raise NotImplementedError  # each adapter signs its own way

    async def close(self) -> None:
        return None


def _encode_token(version: Version) -> str:
    return base64.urlsafe_b64encode(str(version).encode()).decode().rstrip("=")


def _decode_token(token: str) -> Version:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return parse_version(text)
    except (binascii.Error, UnicodeDecodeError, InvalidVersionError, ValueError):
        raise InvalidArgument("malformed page token") from None
