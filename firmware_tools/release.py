"""The release folder: its layout, its metadata, and the rules for promoting and blocking.

Everything here is pure (plain data in, plain data or ReleaseError out) and free of
boto3, so the server's firmware catalog can read the same layout with it::

    <platform>/releases/v<version>/{firmware.bin, metadata.json}
    <platform>/production/{firmware.bin, version.txt, metadata.json}
    <platform>/rollback/blocked_versions.json
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from firmware_tools.semver import InvalidVersionError, Version, parse_version

FIRMWARE = "firmware.bin"
METADATA = "metadata.json"
VERSION_TXT = "version.txt"
BLOCKED = "blocked_versions.json"
SCHEMA_VERSION = 1
# Lower-case names only: a platform becomes a folder and an S3 key prefix, so nothing
# that could climb out of the root ('..', '/', '\\') or differ only by case.
_PLATFORM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ReleaseError(ValueError):
    """A refusal; ``code`` is stable for machines, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def check_platform(platform: str) -> str:
    if not _PLATFORM.fullmatch(platform or ""):
        raise ReleaseError(
            "invalid_platform",
            f"invalid platform {platform!r}: use lower-case letters, digits, '-' and '_' "
            "(e.g. esp32s3); it names a folder and must not contain '/', '\\' or '..'",
        )
    return platform


def check_version(text: str) -> Version:
    try:
        return parse_version(text)
    except InvalidVersionError as exc:
        raise ReleaseError("invalid_version", str(exc)) from None


def release_key(platform: str, version: Version, name: str) -> str:
    return f"{check_platform(platform)}/releases/{version.folder}/{name}"


def production_key(platform: str, name: str) -> str:
    return f"{check_platform(platform)}/production/{name}"


def blocked_key(platform: str) -> str:
    return f"{check_platform(platform)}/rollback/{BLOCKED}"


def dump_json(data: Any) -> bytes:
    """Canonical JSON: sorted keys, two-space indent, trailing newline (stable bytes)."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


@dataclass(frozen=True)
class ReleaseMetadata:
    platform: str
    version: str
    size: int
    sha256: str
    chip: str
    chip_id: int
    secure_version: int
    project_name: str
    idf_version: str
    build_time: str | None
    app_elf_sha256: str
    min_chip_rev_full: int
    max_chip_rev_full: int
    signature: str
    signature_algorithm: str
    key_id: str
    schema_version: int = SCHEMA_VERSION

    @property
    def parsed_version(self) -> Version:
        return check_version(self.version)

    def to_json(self) -> bytes:
        return dump_json(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReleaseMetadata:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReleaseError("bad_metadata", f"metadata.json is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ReleaseError("bad_metadata", "metadata.json must hold a JSON object")
        values: dict[str, Any] = {}
        # Unknown keys are ignored so that older readers accept newer files.
        for field in fields(cls):
            if field.name not in data:
                if field.name == "schema_version":
                    continue
                raise ReleaseError("bad_metadata", f"metadata.json lacks {field.name!r}")
            value = data[field.name]
            expected = _FIELD_TYPES[field.name]
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ReleaseError("bad_metadata", f"metadata.json field {field.name!r} has the wrong type")
            values[field.name] = value
        metadata = cls(**values)
        check_platform(metadata.platform)
        check_version(metadata.version)
        if not re.fullmatch(r"[0-9a-f]{64}", metadata.sha256):
            raise ReleaseError("bad_metadata", "metadata.json sha256 is not 64 hex digits")
        return metadata


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "platform": str,
    "version": str,
    "size": int,
    "sha256": str,
    "chip": str,
    "chip_id": int,
    "secure_version": int,
    "project_name": str,
    "idf_version": str,
    "build_time": (str, type(None)),
    "app_elf_sha256": str,
    "min_chip_rev_full": int,
    "max_chip_rev_full": int,
    "signature": str,
    "signature_algorithm": str,
    "key_id": str,
    "schema_version": int,
}


@dataclass(frozen=True)
class BlockedVersion:
    version: str
    reason: str
    time: str


def parse_blocked(raw: bytes | str | None) -> list[BlockedVersion]:
    """Read blocked_versions.json; a missing file means nothing is blocked.

    Accepts the list of objects this tool writes, and also a bare list of version
    strings or ``{"blocked": [...]}``, which hand-made seed-era files used.
    """
    if raw is None:
        return []
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReleaseError("bad_blocklist", f"{BLOCKED} is not JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("blocked", data.get("versions"))
    if not isinstance(data, list):
        raise ReleaseError("bad_blocklist", f"{BLOCKED} must hold a list of blocked versions")
    entries: list[BlockedVersion] = []
    for raw_item in data:
        item = {"version": raw_item} if isinstance(raw_item, str) else raw_item
        if not isinstance(item, dict) or not isinstance(item.get("version"), str):
            raise ReleaseError("bad_blocklist", f"{BLOCKED} has an entry without a version")
        entries.append(
            BlockedVersion(
                str(check_version(item["version"])),
                str(item.get("reason", "")),
                str(item.get("time", "")),
            )
        )
    return entries


def dump_blocked(entries: list[BlockedVersion]) -> bytes:
    ordered = sorted(entries, key=lambda entry: parse_version(entry.version))
    return dump_json([asdict(entry) for entry in ordered])


def find_blocked(entries: list[BlockedVersion], version: Version) -> BlockedVersion | None:
    return next((e for e in entries if parse_version(e.version) == version), None)


def check_promotion(
    candidate: ReleaseMetadata,
    production: ReleaseMetadata | None,
    blocked: list[BlockedVersion],
    *,
    allow_downgrade: bool = False,
    force_reason: str | None = None,
) -> list[str]:
    """Raise ReleaseError if ``candidate`` may not become production; return warnings."""
    version = candidate.parsed_version
    entry = find_blocked(blocked, version)
    if entry is not None:
        raise ReleaseError(
            "blocked",
            f"refusing to promote {version}: it is blocked ({entry.reason or 'no reason given'}); unblock it first",
        )
    warnings: list[str] = []
    if production is None:
        return warnings
    current = production.parsed_version
    if version < current:
        if not allow_downgrade:
            raise ReleaseError(
                "downgrade",
                f"refusing to promote {version}: it is older than production {current}; "
                "pass --allow-downgrade to roll back deliberately",
            )
        warnings.append(f"downgrading production from {current} to {version}")
    if candidate.secure_version < production.secure_version:
        if not force_reason:
            raise ReleaseError(
                "anti_rollback",
                f"refusing to promote {version}: its secure_version "
                f"{candidate.secure_version} is below production's "
                f"{production.secure_version}, so devices that burned the higher anti-rollback "
                "eFuse will refuse to boot it; pass --force --reason TEXT to override",
            )
        warnings.append(
            f"anti-rollback override: secure_version {candidate.secure_version} < "
            f"{production.secure_version} ({force_reason})"
        )
    return warnings


def check_block(version: Version, production_version: Version | None, replacement: Version | None) -> None:
    """Blocking the live version needs a replacement promoted in the same step."""
    if replacement is not None and replacement == version:
        raise ReleaseError("bad_replacement", f"cannot replace blocked version {version} with itself")
    if production_version is not None and production_version == version and replacement is None:
        raise ReleaseError(
            "blocks_production",
            f"refusing to block {version}: it is the production version; pass "
            "--promote VERSION to promote a replacement in the same step",
        )
