"""``verify``: is a release root (folder or bucket) consistent and trustworthy?

Every release's hash, size, image and signature; production's three files agreeing with
each other and with the release they copy; production not blocked; the block list
readable. Problems are collected rather than raised so one run reports them all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_tools.chips import Chip
from firmware_tools.image import ImageError, validate_image
from firmware_tools.release import (
    BLOCKED,
    FIRMWARE,
    METADATA,
    VERSION_TXT,
    BlockedVersion,
    ReleaseError,
    ReleaseMetadata,
    blocked_key,
    check_platform,
    find_blocked,
    parse_blocked,
    production_key,
)
from firmware_tools.semver import InvalidVersionError, parse_version
from firmware_tools.signing import key_id, verify_signature
from firmware_tools.storage import ReleaseStore


@dataclass
class VerifyReport:
    root: str
    platform: str
    releases: list[str] = field(default_factory=list)
    production: str | None = None
    blocked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    signatures_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_metadata(
    report: VerifyReport,
    *,
    where: str,
    metadata: ReleaseMetadata,
    firmware: bytes,
    chip: Chip | None,
    public_key: Ed25519PublicKey | None,
) -> None:
    if metadata.platform != report.platform:
        report.problems.append(f"{where}: metadata names platform {metadata.platform!r}")
    if len(firmware) != metadata.size:
        report.problems.append(f"{where}: firmware.bin is {len(firmware)} bytes, metadata says {metadata.size}")
    actual = hashlib.sha256(firmware).hexdigest()
    if actual != metadata.sha256:
        report.problems.append(f"{where}: firmware.bin SHA-256 {actual} does not match metadata {metadata.sha256}")
    try:
        validate_image(firmware, chip=chip, version=metadata.version)
    except ImageError as exc:
        report.problems.append(f"{where}: firmware.bin is not a valid image: {exc.reason}")
    if public_key is not None:
        if metadata.key_id != key_id(public_key):
            report.problems.append(
                f"{where}: signed with key {metadata.key_id}, but the public key given is {key_id(public_key)}"
            )
        elif not verify_signature(metadata, public_key):
            report.problems.append(f"{where}: the signature does not verify")


def _check_releases(
    report: VerifyReport,
    store: ReleaseStore,
    keys: list[str],
    *,
    chip: Chip | None,
    public_key: Ed25519PublicKey | None,
) -> dict[str, bytes]:
    prefix = f"{report.platform}/releases/"
    folders: dict[str, set[str]] = {}
    for key in keys:
        if key.startswith(prefix):
            folder, _, name = key[len(prefix) :].partition("/")
            folders.setdefault(folder, set()).add(name)
    metadata_by_version: dict[str, bytes] = {}
    for folder in sorted(folders):
        where = f"{prefix}{folder}"
        try:
            version = parse_version(folder, allow_v_prefix=True)
        except InvalidVersionError:
            version = None
        if version is None or version.folder != folder:
            report.problems.append(f"{where}: folder name is not v<semantic version>")
            continue
        extra = folders[folder] - {FIRMWARE, METADATA}
        if extra:
            report.warnings.append(f"{where}: unexpected files {sorted(extra)}")
        firmware = store.read(f"{where}/{FIRMWARE}")
        raw = store.read(f"{where}/{METADATA}")
        if firmware is None or raw is None:
            missing = FIRMWARE if firmware is None else METADATA
            report.problems.append(f"{where}: {missing} is missing")
            continue
        try:
            metadata = ReleaseMetadata.from_json(raw)
        except ReleaseError as exc:
            report.problems.append(f"{where}: {exc.reason}")
            continue
        if metadata.version != str(version):
            report.problems.append(f"{where}: metadata.json says version {metadata.version}, the folder {folder}")
        _check_metadata(report, where=where, metadata=metadata, firmware=firmware, chip=chip, public_key=public_key)
        report.releases.append(str(version))
        metadata_by_version[str(version)] = raw
    return metadata_by_version


def _check_production(
    report: VerifyReport,
    store: ReleaseStore,
    *,
    releases: dict[str, bytes],
    blocked: list[BlockedVersion],
    chip: Chip | None,
    public_key: Ed25519PublicKey | None,
) -> None:
    names = (FIRMWARE, METADATA, VERSION_TXT)
    files = {name: store.read(production_key(report.platform, name)) for name in names}
    if all(value is None for value in files.values()):
        report.warnings.append(f"{report.platform}/production: nothing promoted yet")
        return
    where = f"{report.platform}/production"
    firmware, raw, version_txt = files[FIRMWARE], files[METADATA], files[VERSION_TXT]
    if firmware is None or raw is None or version_txt is None:
        missing = [name for name, value in files.items() if value is None]
        report.problems.append(f"{where}: missing {', '.join(missing)}")
        return
    try:
        metadata = ReleaseMetadata.from_json(raw)
    except ReleaseError as exc:
        report.problems.append(f"{where}: {exc.reason}")
        return
    report.production = metadata.version
    named = version_txt.decode("utf-8", errors="replace").strip()
    if named != metadata.version:
        report.problems.append(f"{where}: version.txt says {named!r} but metadata.json is {metadata.version}")
    if releases.get(metadata.version) != raw:
        report.problems.append(f"{where}: metadata.json is not a copy of releases/v{metadata.version}/metadata.json")
    entry = find_blocked(blocked, metadata.parsed_version)
    if entry is not None:
        report.problems.append(f"{where}: production version {metadata.version} is blocked ({entry.reason})")
    _check_metadata(report, where=where, metadata=metadata, firmware=firmware, chip=chip, public_key=public_key)


def verify_tree(
    store: ReleaseStore,
    platform: str,
    *,
    chip: Chip | None,
    public_key: Ed25519PublicKey | None,
) -> VerifyReport:
    check_platform(platform)
    report = VerifyReport(store.describe(), platform, signatures_checked=public_key is not None)
    keys = store.list(f"{platform}/")
    releases = _check_releases(report, store, keys, chip=chip, public_key=public_key)
    blocked: list[BlockedVersion] = []
    try:
        blocked = parse_blocked(store.read(blocked_key(platform)))
    except ReleaseError as exc:
        report.problems.append(f"{platform}/rollback/{BLOCKED}: {exc.reason}")
    report.blocked = [entry.version for entry in blocked]
    _check_production(report, store, releases=releases, blocked=blocked, chip=chip, public_key=public_key)
    if public_key is None:
        report.warnings.append("signatures not checked: no public key given")
    return report
