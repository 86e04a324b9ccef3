"""build, promote, block, unblock, publish and verify over local folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from firmware_tools import workflow
from firmware_tools.checks import verify_tree
from firmware_tools.chips import CHIPS
from firmware_tools.image import ImageError
from firmware_tools.publish import publish
from firmware_tools.release import ReleaseError
from firmware_tools.storage import LocalStore, ProgressCallback, StoreError

from .helpers import image, private_key

S3 = CHIPS["esp32s3"]


def build(store: LocalStore, version: str, secure_version: int = 0) -> None:
    workflow.build_release(
        store,
        image(version, secure_version=secure_version),
        platform="esp32s3",
        chip=S3,
        version_text=version,
        key=private_key(),
        env={},
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "dist")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_build_lays_out_the_release_folder(store: LocalStore) -> None:
    build(store, "1.2.0")
    assert sorted(tree(store.root)) == [
        "esp32s3/releases/v1.2.0/firmware.bin",
        "esp32s3/releases/v1.2.0/metadata.json",
    ]
    assert tree(store.root)["esp32s3/releases/v1.2.0/firmware.bin"] == image("1.2.0")


def test_build_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    a, b = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    build(a, "1.2.0")
    build(b, "1.2.0")
    assert tree(a.root) == tree(b.root)


def test_source_date_epoch_sets_the_build_time(store: LocalStore) -> None:
    result = workflow.build_release(
        store,
        image(),
        platform="esp32s3",
        chip=S3,
        version_text="1.2.0",
        key=private_key(),
        env={"SOURCE_DATE_EPOCH": "1700000000"},
    )
    assert result.metadata.build_time == "2023-11-14T22:13:20Z"


def test_rebuilding_identically_is_a_no_op_but_different_bytes_are_refused(
    store: LocalStore,
) -> None:
    build(store, "1.2.0")
    again = workflow.build_release(
        store,
        image(),
        platform="esp32s3",
        chip=S3,
        version_text="1.2.0",
        key=private_key(),
        env={},
    )
    assert again.unchanged
    with pytest.raises(ReleaseError, match="releases are immutable"):
        workflow.build_release(
            store,
            image("1.2.0", secure_version=1),
            platform="esp32s3",
            chip=S3,
            version_text="1.2.0",
            key=private_key(),
            env={},
        )


def test_build_refuses_bad_images_and_writes_nothing(store: LocalStore) -> None:
    with pytest.raises(ImageError, match="differs from the release version"):
        build_other = image("1.2.1")
        workflow.build_release(
            store,
            build_other,
            platform="esp32s3",
            chip=S3,
            version_text="1.2.0",
            key=private_key(),
            env={},
        )
    with pytest.raises(ImageError, match="does not match the target platform"):
        workflow.build_release(
            store,
            image(chip="esp32c3"),
            platform="esp32s3",
            chip=S3,
            version_text="1.2.0",
            key=private_key(),
            env={},
        )
    assert not store.root.exists()


def test_promote_writes_production_and_the_pointer(store: LocalStore) -> None:
    build(store, "1.2.0")
    result = workflow.promote(store, "esp32s3", "1.2.0")
    files = tree(store.root)
    assert files["esp32s3/production/version.txt"] == b"1.2.0\n"
    assert files["esp32s3/production/firmware.bin"] == image("1.2.0")
    assert files["esp32s3/production/metadata.json"] == (files["esp32s3/releases/v1.2.0/metadata.json"])
    assert result.previous is None
    assert workflow.promote(store, "esp32s3", "1.2.0").unchanged


def test_promote_refusals(store: LocalStore) -> None:
    with pytest.raises(ReleaseError, match=re.escape("no release v9.9.9")):
        workflow.promote(store, "esp32s3", "9.9.9")
    build(store, "1.9.0")
    build(store, "1.10.0", secure_version=2)
    build(store, "1.11.0", secure_version=1)
    workflow.promote(store, "esp32s3", "1.10.0")
    with pytest.raises(ReleaseError, match=re.escape("older than production 1.10.0")):
        workflow.promote(store, "esp32s3", "1.9.0")
    with pytest.raises(ReleaseError, match="secure_version 0 is below production's 2"):
        workflow.promote(store, "esp32s3", "1.9.0", allow_downgrade=True)
    with pytest.raises(ReleaseError, match="secure_version 1 is below"):
        workflow.promote(store, "esp32s3", "1.11.0")
    forced = workflow.promote(store, "esp32s3", "1.11.0", force_reason="lab fleet only")
    assert "lab fleet only" in forced.warnings[0]


def test_block_and_unblock(store: LocalStore) -> None:
    build(store, "1.1.0")
    build(store, "1.2.0")
    workflow.promote(store, "esp32s3", "1.2.0")
    result = workflow.block(store, "esp32s3", "1.1.0", reason="bricks C3 boards", now="T")
    assert result.known_release
    blocked = json.loads((store.root / "esp32s3/rollback/blocked_versions.json").read_text())
    assert blocked == [{"version": "1.1.0", "reason": "bricks C3 boards", "time": "T"}]
    with pytest.raises(ReleaseError, match=re.escape("it is blocked (bricks C3 boards)")):
        workflow.promote(store, "esp32s3", "1.1.0", allow_downgrade=True)
    assert workflow.block(store, "esp32s3", "1.1.0", reason="again").unchanged
    workflow.unblock(store, "esp32s3", "1.1.0")
    with pytest.raises(ReleaseError, match=re.escape("1.1.0 is not blocked")):
        workflow.unblock(store, "esp32s3", "1.1.0")
    with pytest.raises(ReleaseError, match="needs --reason"):
        workflow.block(store, "esp32s3", "1.1.0", reason=" ")


def test_blocking_production_promotes_the_replacement_in_the_same_step(
    store: LocalStore,
) -> None:
    build(store, "1.1.0")
    build(store, "1.2.0")
    workflow.promote(store, "esp32s3", "1.2.0")
    with pytest.raises(ReleaseError, match="it is the production version"):
        workflow.block(store, "esp32s3", "1.2.0", reason="crash loop")
    assert not (store.root / "esp32s3/rollback").exists()
    result = workflow.block(store, "esp32s3", "1.2.0", reason="crash loop", replacement_text="1.1.0")
    assert result.promoted is not None
    assert (store.root / "esp32s3/production/version.txt").read_text() == "1.1.0\n"
    assert verify_tree(store, "esp32s3", chip=S3, public_key=private_key().public_key()).ok


def test_verify_finds_every_inconsistency(store: LocalStore) -> None:
    build(store, "1.2.0")
    workflow.promote(store, "esp32s3", "1.2.0")
    public = private_key().public_key()
    assert verify_tree(store, "esp32s3", chip=S3, public_key=public).ok
    (store.root / "esp32s3/production/version.txt").write_text("1.3.0\n")
    firmware = store.root / "esp32s3/releases/v1.2.0/firmware.bin"
    firmware.write_bytes(firmware.read_bytes()[:-1] + b"\0")
    report = verify_tree(store, "esp32s3", chip=S3, public_key=public)
    text = "\n".join(report.problems)
    assert "version.txt says '1.3.0' but metadata.json is 1.2.0" in text
    assert "releases/v1.2.0: firmware.bin SHA-256" in text
    assert "bad hash" in text


def test_verify_reports_a_blocked_production_and_a_foreign_signature(store: LocalStore) -> None:
    from firmware_tools.signing import generate_key_pair, load_public_key

    build(store, "1.2.0")
    workflow.promote(store, "esp32s3", "1.2.0")
    (store.root / "esp32s3/rollback").mkdir(parents=True)
    (store.root / "esp32s3/rollback/blocked_versions.json").write_text('["1.2.0"]')
    other = load_public_key(generate_key_pair()[1])
    problems = "\n".join(verify_tree(store, "esp32s3", chip=S3, public_key=other).problems)
    assert "production version 1.2.0 is blocked" in problems
    assert "signed with key" in problems


class RecordingStore(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.writes: list[str] = []

    def write(self, key: str, data: bytes, *, progress: ProgressCallback | None = None) -> None:
        self.writes.append(key)
        super().write(key, data, progress=progress)


def test_publish_uploads_releases_before_production_pointers(store: LocalStore, tmp_path: Path) -> None:
    build(store, "1.10.0")
    build(store, "1.9.0")
    workflow.promote(store, "esp32s3", "1.10.0")
    workflow.block(store, "esp32s3", "1.9.0", reason="r")
    dest = RecordingStore(tmp_path / "published")
    result = publish(store, dest, "esp32s3")
    assert dest.writes == [
        "esp32s3/releases/v1.9.0/firmware.bin",
        "esp32s3/releases/v1.9.0/metadata.json",
        "esp32s3/releases/v1.10.0/firmware.bin",
        "esp32s3/releases/v1.10.0/metadata.json",
        "esp32s3/rollback/blocked_versions.json",
        "esp32s3/production/firmware.bin",
        "esp32s3/production/metadata.json",
        "esp32s3/production/version.txt",
    ]
    assert tree(dest.root) == tree(store.root)
    again = publish(store, dest, "esp32s3")
    assert again.uploaded == [] and len(again.skipped) == 8
    assert result.uploaded == dest.writes


def test_publish_refuses_to_undo_the_destination(store: LocalStore, tmp_path: Path) -> None:
    dest = LocalStore(tmp_path / "published")
    build(dest, "1.3.0")
    workflow.promote(dest, "esp32s3", "1.3.0")
    workflow.block(dest, "esp32s3", "1.0.0", reason="old")
    build(store, "1.2.0")
    workflow.promote(store, "esp32s3", "1.2.0")
    with pytest.raises(ReleaseError, match=re.escape("destination's production is 1.3.0, newer")):
        publish(store, dest, "esp32s3")
    with pytest.raises(ReleaseError, match=re.escape("destination blocks 1.0.0")):
        publish(store, dest, "esp32s3", allow_downgrade=True)
    other = LocalStore(tmp_path / "other")
    build(other, "1.2.0", secure_version=5)
    with pytest.raises(ReleaseError, match="releases are immutable"):
        publish(other, store, "esp32s3")


def test_store_refuses_keys_outside_the_root(store: LocalStore) -> None:
    for key in ("../x", "/etc/passwd", "a/../../b", "a\\b"):
        with pytest.raises(StoreError, match="would leave the release root"):
            store.write(key, b"x")
