"""Parsing and checking app images: round trips, and every corruption refused with its reason."""

from __future__ import annotations

import hashlib

import pytest

from firmware_tools.chips import CHIPS, chip_by_name
from firmware_tools.image import ImageError, check_image, parse_image, validate_image
from firmware_tools.testimage import make_test_image, parse_size

from .helpers import image


@pytest.mark.parametrize("chip", sorted(CHIPS))
def test_generated_images_round_trip_for_every_chip(chip: str) -> None:
    data = make_test_image(chip, "2.0.1-rc.1", size=4096, secure_version=3, project_name="p")
    parsed = validate_image(data, chip=CHIPS[chip], version="2.0.1-rc.1")
    assert parsed.chip == chip
    assert parsed.chip_id == CHIPS[chip].chip_id
    assert parsed.size == 4096
    assert parsed.hash_appended
    assert parsed.checksum_valid and parsed.digest_valid
    desc = parsed.app_descriptor
    assert desc is not None
    assert (desc.version, desc.secure_version, desc.project_name) == ("2.0.1-rc.1", 3, "p")
    assert desc.idf_version == "v5.3.1"
    assert (desc.date, desc.time) == ("Jan  1 2025", "00:00:00")
    assert parsed.segments[0].data_offset == 0x20
    assert parsed.segments[0].memory_type == "DROM"
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()


def test_image_fields_are_read_from_the_header() -> None:
    data = make_test_image("esp32c3", "1.0.0", size=2048, flash_mode="qio", flash_size="8MB")
    parsed = parse_image(data)
    assert parsed.flash_mode_name == "qio"
    assert parsed.flash_size == "8MB"
    assert parsed.flash_freq == "40m"
    assert parsed.wp_pin == 0xEE
    assert parsed.max_rev_full == 0xFFFF
    assert parsed.segment_count == len(parsed.segments) == 4
    assert all(seg.length % 4 == 0 for seg in parsed.segments)
    assert parsed.to_dict()["app_descriptor"]["version"] == "1.0.0"


def test_requested_size_is_exact_and_rounded_to_16() -> None:
    assert len(make_test_image("esp32s3", "1.0.0", size=300 * 1024)) == 300 * 1024
    assert len(make_test_image("esp32s3", "1.0.0", size=5000)) == 5008
    assert parse_size("300KB") == 300 * 1024
    assert parse_size("1MB") == 1024 * 1024
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError, match="invalid size"):
        parse_size("lots")


def test_generation_is_deterministic() -> None:
    assert make_test_image("esp32", "1.0.0", size=4096) == make_test_image("esp32", "1.0.0", size=4096)


def test_image_without_appended_hash_is_valid() -> None:
    parsed = validate_image(make_test_image("esp32s3", "1.0.0", size=2048, hash_appended=False))
    assert not parsed.hash_appended
    assert parsed.digest_valid is None


def test_trailing_bytes_after_the_digest_are_reported_not_refused() -> None:
    parsed = validate_image(image() + b"\xff" * 64)
    assert parsed.trailing_bytes == 64


def _reason(data: bytes, **kwargs: object) -> tuple[str, str]:
    with pytest.raises(ImageError) as caught:
        validate_image(data, **kwargs)  # type: ignore[arg-type]
    return caught.value.code, caught.value.reason


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def test_a_flipped_byte_in_a_segment_is_a_bad_checksum() -> None:
    data = image()
    seg = parse_image(data).segments[1]
    code, reason = _reason(_flip(data, seg.data_offset + 10))
    assert code == "bad_checksum"
    assert reason.startswith("bad checksum: stored 0x")
    assert "computed 0x" in reason


def test_a_flipped_checksum_byte_is_a_bad_checksum() -> None:
    data = image()
    offset = parse_image(data).checksum_offset
    code, reason = _reason(_flip(data, offset))
    assert code == "bad_checksum"
    assert f"at offset 0x{offset:x}" in reason


def test_a_flipped_byte_in_the_appended_hash_is_a_bad_hash() -> None:
    data = image()
    code, reason = _reason(_flip(data, len(data) - 5))
    assert code == "bad_hash"
    assert "bad hash: the appended SHA-256" in reason


def test_a_header_change_breaks_the_hash() -> None:
    code, _ = _reason(_flip(image(), 4))  # the entry point is covered only by the hash
    assert code == "bad_hash"


def test_wrong_magic_is_refused() -> None:
    code, reason = _reason(b"\x7fELF" + image()[4:])
    assert code == "bad_magic"
    assert "wrong magic byte 0x7f at offset 0" in reason


def test_wrong_chip_is_refused_with_both_chips_named() -> None:
    code, reason = _reason(image(chip="esp32c3"), chip=chip_by_name("esp32s3"))
    assert code == "chip_mismatch"
    assert reason == ("chip id 5 (esp32c3) does not match the target platform's chip esp32s3 (chip id 9)")


@pytest.mark.parametrize(
    ("cut", "where"),
    [
        (10, "shorter than the 24-byte image header"),
        (28, "segment 0 header at offset 0x18 is cut off"),
        (200, "segment 0 (load address 0x3c000020"),
        (-40, "the checksum byte"),
        (-20, "the appended SHA-256"),
    ],
)
def test_truncation_is_refused_with_the_place(cut: int, where: str) -> None:
    data = image()
    if cut == -40:  # stop just before the checksum byte
        cut = parse_image(data).checksum_offset
    code, reason = _reason(data[:cut])
    assert code == "truncated"
    assert reason.startswith("truncated: ")
    assert where in reason


def test_descriptor_version_must_equal_the_release_version() -> None:
    code, reason = _reason(image("1.2.1"), version="1.2.0")
    assert code == "version_mismatch"
    assert reason == "the app descriptor's version '1.2.1' differs from the release version '1.2.0'"
    validate_image(image("1.2.0"), version="v1.2.0")  # a leading v is the same version


def test_missing_app_descriptor_is_refused() -> None:
    data = bytearray(image())
    data[0x20:0x24] = b"\0\0\0\0"  # wipe the magic, then repair checksum and hash
    parsed = parse_image(bytes(data))
    data[parsed.checksum_offset] = parsed.checksum_computed
    end = parsed.checksum_offset + 1
    data[end : end + 32] = hashlib.sha256(bytes(data[:end])).digest()
    code, reason = _reason(bytes(data))
    assert code == "missing_app_descriptor"
    assert "no esp_app_desc_t (magic 0xABCD5432) at offset 0x20" in reason


def test_segment_length_must_be_a_multiple_of_four() -> None:
    data = bytearray(image())
    data[28:32] = (0x102).to_bytes(4, "little")
    code, reason = _reason(bytes(data))
    assert code == "bad_segment"
    assert "not a multiple of 4" in reason


def test_bad_hash_flag_and_segment_count_are_refused() -> None:
    data = bytearray(image())
    data[23] = 7
    assert _reason(bytes(data))[1] == ("invalid hash_appended byte 0x07 at offset 23 (must be 0 or 1)")
    data = bytearray(image())
    data[1] = 0
    assert _reason(bytes(data))[0] == "bad_segment_count"


def test_inspect_can_read_a_corrupt_image_that_check_refuses() -> None:
    data = image()
    parsed = parse_image(_flip(data, parse_image(data).checksum_offset))
    assert not parsed.checksum_valid
    with pytest.raises(ImageError):
        check_image(parsed)
