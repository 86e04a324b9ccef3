"""``publish``: copy a platform's release folder from one root to another (usually S3).

Order matters because devices and the server read the destination while we write:
immutable releases first (firmware before metadata), then the block list, then
production's firmware and metadata, and version.txt last. Each object is read back and
its SHA-256 compared by the store. Objects already identical are skipped, so a
re-run after a failure finishes the job.

Before anything is written, the destination is checked so a publish cannot silently
undo someone else's work: a release there with other bytes, a newer production, or a
block that the source lacks all refuse the publish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_tools.release import (
    FIRMWARE,
    METADATA,
    VERSION_TXT,
    ReleaseError,
    ReleaseMetadata,
    blocked_key,
    check_platform,
    check_version,
    parse_blocked,
    production_key,
)
from firmware_tools.semver import Version, parse_version
from firmware_tools.storage import ProgressCallback, ReleaseStore

ProgressFactory = Callable[[str, int], tuple[ProgressCallback, Callable[[], None]]]


@dataclass
class PublishResult:
    source: str
    destination: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def publish_order(platform: str, keys: list[str]) -> list[str]:
    """Keys in the order a reader can tolerate seeing them appear."""
    prefix = f"{platform}/releases/"
    releases: list[tuple[Version, int, str]] = []
    for key in keys:
        if key.startswith(prefix):
            folder, _, name = key[len(prefix) :].partition("/")
            rank = {FIRMWARE: 0, METADATA: 1}.get(name, 2)
            releases.append((check_version(folder), rank, key))
    releases.sort(key=lambda item: (item[0], item[1]))
    ordered = [key for _, _, key in releases]
    blocked = blocked_key(platform)
    if blocked in keys:
        ordered.append(blocked)
    for name in (FIRMWARE, METADATA, VERSION_TXT):
        key = production_key(platform, name)
        if key in keys:
            ordered.append(key)
    return ordered


def _check_destination(
    source: ReleaseStore,
    destination: ReleaseStore,
    platform: str,
    keys: list[str],
    *,
    allow_downgrade: bool,
) -> None:
    for key in keys:
        if "/releases/" in key:
            existing = destination.read(key)
            if existing is not None and existing != source.read(key):
                raise ReleaseError(
                    "release_conflict",
                    f"{destination.describe(key)} already exists with different content; "
                    "releases are immutable, so publish a new version instead",
                )
    dest_raw = destination.read(production_key(platform, METADATA))
    src_raw = source.read(production_key(platform, METADATA))
    if dest_raw is not None and src_raw is not None and not allow_downgrade:
        there = ReleaseMetadata.from_json(dest_raw).parsed_version
        here = ReleaseMetadata.from_json(src_raw).parsed_version
        if here < there:
            raise ReleaseError(
                "downgrade",
                f"the destination's production is {there}, newer than the source's {here}; "
                "pass --allow-downgrade to roll the destination back",
            )
    dest_blocked = {e.version for e in parse_blocked(destination.read(blocked_key(platform)))}
    src_blocked = {e.version for e in parse_blocked(source.read(blocked_key(platform)))}
    missing = sorted(dest_blocked - src_blocked, key=parse_version)
    if missing:
        raise ReleaseError(
            "would_unblock",
            f"the destination blocks {', '.join(missing)}, which the source does not; "
            "publishing would unblock them (block them in the source first)",
        )


def publish(
    source: ReleaseStore,
    destination: ReleaseStore,
    platform: str,
    *,
    allow_downgrade: bool = False,
    progress: ProgressFactory | None = None,
) -> PublishResult:
    check_platform(platform)
    keys = source.list(f"{platform}/")
    ordered = publish_order(platform, keys)
    if not ordered:
        raise ReleaseError("nothing_to_publish", f"nothing to publish under {source.describe(platform)}")
    _check_destination(source, destination, platform, ordered, allow_downgrade=allow_downgrade)
    result = PublishResult(source.describe(), destination.describe())
    for key in ordered:
        data = source.read(key)
        if data is None:  # vanished since listing
            raise ReleaseError("source_changed", f"{source.describe(key)} disappeared")
        if destination.read(key) == data:
            result.skipped.append(key)
            continue
        if progress is not None:
            callback, finish = progress(key, len(data))
            destination.write(key, data, progress=callback)
            finish()
        else:
            destination.write(key, data)
        result.uploaded.append(key)
    return result
