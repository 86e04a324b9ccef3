"""Metadata, block list and the promote/block rules, as pure functions over plain data."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from firmware_tools.image import parse_image
from firmware_tools.release import (
    BlockedVersion,
    ReleaseError,
    ReleaseMetadata,
    check_block,
    check_platform,
    check_promotion,
    dump_blocked,
    parse_blocked,
    release_key,
)
from firmware_tools.semver import parse_version
from firmware_tools.signing import verify_signature
from firmware_tools.workflow import make_metadata

from .helpers import image, private_key


def meta(version: str = "1.2.0", secure_version: int = 0) -> ReleaseMetadata:
    parsed = parse_image(image(version, secure_version=secure_version))
    return make_metadata(parsed, platform="esp32s3", version=parse_version(version), key=private_key(), env={})


def _refusal(**kwargs: object) -> ReleaseError:
    with pytest.raises(ReleaseError) as caught:
        check_promotion(**kwargs)  # type: ignore[arg-type]
    return caught.value


def test_metadata_round_trips_through_canonical_json() -> None:
    original = meta()
    raw = original.to_json()
    assert raw.endswith(b"}\n")
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    assert ReleaseMetadata.from_json(raw) == original
    assert verify_signature(ReleaseMetadata.from_json(raw), private_key().public_key())


def test_metadata_holds_what_the_issue_lists() -> None:
    data = json.loads(meta("1.2.0", secure_version=4).to_json())
    assert data["version"] == "1.2.0"
    assert data["size"] == 8192
    assert len(data["sha256"]) == 64
    assert (data["chip"], data["chip_id"], data["secure_version"]) == ("esp32s3", 9, 4)
    assert (data["project_name"], data["idf_version"]) == ("fleet-demo", "v5.3.1")
    assert data["build_time"] == "2025-01-01T00:00:00Z"
    assert data["signature_algorithm"] == "ed25519"


def test_metadata_from_json_names_what_is_wrong() -> None:
    data = json.loads(meta().to_json())
    del data["sha256"]
    with pytest.raises(ReleaseError, match="lacks 'sha256'"):
        ReleaseMetadata.from_json(json.dumps(data))
    with pytest.raises(ReleaseError, match="not JSON"):
        ReleaseMetadata.from_json(b"{")
    data = json.loads(meta().to_json())
    data["platform"] = "../etc"
    with pytest.raises(ReleaseError, match="invalid platform"):
        ReleaseMetadata.from_json(json.dumps(data))
    data = json.loads(meta().to_json())
    data["future_field"] = 1
    assert ReleaseMetadata.from_json(json.dumps(data)) == meta()


@pytest.mark.parametrize("platform", ["..", "../x", "a/b", "esp32s3\\x", "", "ESP32S3", ".hidden"])
def test_platforms_that_could_escape_the_root_are_refused(platform: str) -> None:
    with pytest.raises(ReleaseError, match="invalid platform"):
        check_platform(platform)


def test_layout_keys() -> None:
    assert release_key("esp32s3", parse_version("1.2.0"), "firmware.bin") == ("esp32s3/releases/v1.2.0/firmware.bin")


def test_block_list_round_trip_and_seed_formats() -> None:
    entries = [BlockedVersion("1.10.0", "bricks", "t2"), BlockedVersion("1.9.0", "slow", "t1")]
    raw = dump_blocked(entries)
    assert [e["version"] for e in json.loads(raw)] == ["1.9.0", "1.10.0"]
    assert parse_blocked(raw) == sorted(entries, key=lambda e: parse_version(e.version))
    assert parse_blocked(None) == []
    assert [e.version for e in parse_blocked(b'["1.0.0"]')] == ["1.0.0"]
    assert [e.version for e in parse_blocked(b'{"blocked": ["v1.0.1"]}')] == ["1.0.1"]
    with pytest.raises(ReleaseError, match="invalid version"):
        parse_blocked(b'["../../x"]')


def test_first_promotion_is_allowed() -> None:
    assert check_promotion(meta(), None, []) == []


def test_blocked_version_is_never_promoted() -> None:
    error = _refusal(
        candidate=meta(),
        production=None,
        blocked=[BlockedVersion("1.2.0", "bricks C3", "t")],
        allow_downgrade=True,
    )
    assert error.code == "blocked"
    assert "it is blocked (bricks C3)" in error.reason


def test_downgrade_needs_allow_downgrade() -> None:
    error = _refusal(candidate=meta("1.9.0"), production=meta("1.10.0"), blocked=[])
    assert error.code == "downgrade"
    assert "older than production 1.10.0" in error.reason
    warnings = check_promotion(meta("1.9.0"), meta("1.10.0"), [], allow_downgrade=True)
    assert warnings == ["downgrading production from 1.10.0 to 1.9.0"]


def test_prerelease_is_below_its_release() -> None:
    error = _refusal(candidate=meta("1.2.0-rc.1"), production=meta("1.2.0"), blocked=[])
    assert error.code == "downgrade"


def test_lower_secure_version_needs_force_with_reason() -> None:
    production = replace(meta("1.2.0"), secure_version=3)
    candidate = replace(meta("1.3.0"), secure_version=2)
    error = _refusal(candidate=candidate, production=production, blocked=[])
    assert error.code == "anti_rollback"
    assert "secure_version 2 is below production's 3" in error.reason
    warnings = check_promotion(candidate, production, [], force_reason="eFuse never burned")
    assert "eFuse never burned" in warnings[0]


def test_blocking_production_needs_a_replacement() -> None:
    v = parse_version
    with pytest.raises(ReleaseError, match="it is the production version"):
        check_block(v("1.2.0"), v("1.2.0"), None)
    with pytest.raises(ReleaseError, match="with itself"):
        check_block(v("1.2.0"), v("1.2.0"), v("1.2.0"))
    check_block(v("1.2.0"), v("1.2.0"), v("1.1.0"))
    check_block(v("1.1.0"), v("1.2.0"), None)
