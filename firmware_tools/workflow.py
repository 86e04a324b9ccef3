"""The release engineer's steps over a ReleaseStore: build, promote, block, unblock.

Rules live in ``release.py`` as pure functions; this module reads the current state,
applies them, and writes in the order that keeps readers consistent: a release's
firmware before its metadata, the block list before production, and version.txt last.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_tools import testimage
from firmware_tools.chips import Chip
from firmware_tools.image import AppDescriptor, FirmwareImage, validate_image
from firmware_tools.release import (
    FIRMWARE,
    METADATA,
    VERSION_TXT,
    BlockedVersion,
    ReleaseError,
    ReleaseMetadata,
    blocked_key,
    check_block,
    check_platform,
    check_promotion,
    check_version,
    dump_blocked,
    find_blocked,
    parse_blocked,
    production_key,
    release_key,
)
from firmware_tools.semver import Version
from firmware_tools.signing import ALGORITHM, key_id, sign_digest
from firmware_tools.storage import ReleaseStore

_MONTHS = {name: number for number, name in enumerate(testimage.MONTHS, 1)}


def descriptor_build_time(descriptor: AppDescriptor) -> str | None:
    """ISO 8601 from IDF's ``__DATE__ __TIME__`` (recorded without a zone; read as UTC)."""
    try:
        month, day, year = descriptor.date.split()
        hour, minute, second = (int(part) for part in descriptor.time.split(":"))
        when = datetime(int(year), _MONTHS[month], int(day), hour, minute, second, tzinfo=UTC)
    except (ValueError, KeyError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_time(descriptor: AppDescriptor, env: Mapping[str, str]) -> str | None:
    """SOURCE_DATE_EPOCH wins (the reproducible-builds convention), else the image's own."""
    epoch = env.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (ValueError, OverflowError, OSError):
            raise ReleaseError("invalid_epoch", f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix timestamp") from None
    return descriptor_build_time(descriptor)


def make_metadata(
    image: FirmwareImage,
    *,
    platform: str,
    version: Version,
    key: Ed25519PrivateKey,
    env: Mapping[str, str],
) -> ReleaseMetadata:
    descriptor = image.app_descriptor
    assert descriptor is not None and image.chip is not None  # validate_image ensured both
    return ReleaseMetadata(
        platform=platform,
        version=str(version),
        size=image.size,
        sha256=image.sha256,
        chip=image.chip,
        chip_id=image.chip_id,
        secure_version=descriptor.secure_version,
        project_name=descriptor.project_name,
        idf_version=descriptor.idf_version,
        build_time=build_time(descriptor, env),
        app_elf_sha256=descriptor.app_elf_sha256,
        min_chip_rev_full=image.min_rev_full,
        max_chip_rev_full=image.max_rev_full,
        signature=sign_digest(key, image.sha256),
        signature_algorithm=ALGORITHM,
        key_id=key_id(key.public_key()),
    )


@dataclass(frozen=True)
class BuildResult:
    metadata: ReleaseMetadata
    keys: list[str]
    unchanged: bool


def build_release(
    store: ReleaseStore,
    data: bytes,
    *,
    platform: str,
    chip: Chip,
    version_text: str,
    key: Ed25519PrivateKey,
    env: Mapping[str, str] = os.environ,
) -> BuildResult:
    check_platform(platform)
    version = check_version(version_text)
    image = validate_image(data, chip=chip, version=str(version))
    metadata = make_metadata(image, platform=platform, version=version, key=key, env=env)
    payload = {release_key(platform, version, FIRMWARE): data}
    payload[release_key(platform, version, METADATA)] = metadata.to_json()
    existing = {k: store.read(k) for k in payload}
    for k, new in payload.items():
        if existing[k] is not None and existing[k] != new:
            raise ReleaseError(
                "release_exists",
                f"release {version.folder} already exists at {store.describe(k)} with "
                "different content; releases are immutable, so build a new version",
            )
    for k, new in payload.items():  # firmware first: metadata never names a missing binary
        if existing[k] is None:
            store.write(k, new)
    unchanged = all(existing[k] is not None for k in payload)
    return BuildResult(metadata, list(payload), unchanged)


def load_release(store: ReleaseStore, platform: str, version: Version) -> ReleaseMetadata:
    raw = store.read(release_key(platform, version, METADATA))
    if raw is None:
        raise ReleaseError(
            "not_found",
            f"no release {version.folder} at {store.describe(f'{platform}/releases/')}; build it first",
        )
    metadata = ReleaseMetadata.from_json(raw)
    firmware = store.read(release_key(platform, version, FIRMWARE))
    if firmware is None or hashlib.sha256(firmware).hexdigest() != metadata.sha256:
        raise ReleaseError(
            "corrupt_release",
            f"release {version.folder}: firmware.bin is missing or does not match the SHA-256 in its metadata.json",
        )
    return metadata


def load_production(store: ReleaseStore, platform: str) -> ReleaseMetadata | None:
    raw = store.read(production_key(platform, METADATA))
    return None if raw is None else ReleaseMetadata.from_json(raw)


def load_blocked(store: ReleaseStore, platform: str) -> list[BlockedVersion]:
    return parse_blocked(store.read(blocked_key(platform)))


@dataclass(frozen=True)
class PromoteResult:
    metadata: ReleaseMetadata
    previous: str | None
    warnings: list[str] = field(default_factory=list)
    unchanged: bool = False


def _write_production(store: ReleaseStore, platform: str, metadata: ReleaseMetadata) -> None:
    version = metadata.parsed_version
    firmware = store.read(release_key(platform, version, FIRMWARE))
    raw_metadata = store.read(release_key(platform, version, METADATA))
    assert firmware is not None and raw_metadata is not None  # load_release checked
    store.write(production_key(platform, FIRMWARE), firmware)
    store.write(production_key(platform, METADATA), raw_metadata)
    # The pointer goes last, so it never names a version whose files are not in place.
    store.write(production_key(platform, VERSION_TXT), f"{version}\n".encode())


def promote(
    store: ReleaseStore,
    platform: str,
    version_text: str,
    *,
    allow_downgrade: bool = False,
    force_reason: str | None = None,
    blocked: list[BlockedVersion] | None = None,
) -> PromoteResult:
    check_platform(platform)
    version = check_version(version_text)
    candidate = load_release(store, platform, version)
    production = load_production(store, platform)
    blocked = load_blocked(store, platform) if blocked is None else blocked
    warnings = check_promotion(
        candidate, production, blocked, allow_downgrade=allow_downgrade, force_reason=force_reason
    )
    previous = production.version if production else None
    version_txt = store.read(production_key(platform, VERSION_TXT))
    if production == candidate and version_txt == f"{version}\n".encode():
        return PromoteResult(candidate, previous, warnings, unchanged=True)
    _write_production(store, platform, candidate)
    return PromoteResult(candidate, previous, warnings)


@dataclass(frozen=True)
class BlockResult:
    entry: BlockedVersion
    known_release: bool
    promoted: PromoteResult | None
    unchanged: bool = False


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def block(
    store: ReleaseStore,
    platform: str,
    version_text: str,
    *,
    reason: str,
    replacement_text: str | None = None,
    force_reason: str | None = None,
    now: str | None = None,
) -> BlockResult:
    check_platform(platform)
    version = check_version(version_text)
    if not reason.strip():
        raise ReleaseError("missing_reason", "blocking needs --reason TEXT (say why)")
    replacement = check_version(replacement_text) if replacement_text else None
    production = load_production(store, platform)
    check_block(version, production.parsed_version if production else None, replacement)
    blocked = load_blocked(store, platform)
    known = store.read(release_key(platform, version, METADATA)) is not None
    existing = find_blocked(blocked, version)
    entry = existing or BlockedVersion(str(version), reason.strip(), now or _now())
    new_blocked = blocked if existing else [*blocked, entry]
    promoted = None
    if replacement is not None:
        # Check the replacement before writing anything, so a refusal changes nothing.
        candidate = load_release(store, platform, replacement)
        # Blocking the live version is itself the decision to roll back, so a lower
        # replacement is expected; anti-rollback still needs an explicit --force.
        check_promotion(candidate, production, new_blocked, allow_downgrade=True, force_reason=force_reason)
    if existing is None:
        store.write(blocked_key(platform), dump_blocked(new_blocked))
    if replacement is not None:
        promoted = promote(
            store,
            platform,
            str(replacement),
            allow_downgrade=True,
            force_reason=force_reason,
            blocked=new_blocked,
        )
    return BlockResult(entry, known, promoted, unchanged=existing is not None and promoted is None)


def unblock(store: ReleaseStore, platform: str, version_text: str) -> BlockedVersion:
    check_platform(platform)
    version = check_version(version_text)
    blocked = load_blocked(store, platform)
    entry = find_blocked(blocked, version)
    if entry is None:
        raise ReleaseError("not_blocked", f"{version} is not blocked on {platform}")
    store.write(blocked_key(platform), dump_blocked([e for e in blocked if e is not entry]))
    return entry
