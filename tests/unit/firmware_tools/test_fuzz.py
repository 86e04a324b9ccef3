"""The parser never crashes: random bytes and mutated valid images give a result or an ImageError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_tools.chips import CHIPS
from firmware_tools.image import ImageError, validate_image
from firmware_tools.testimage import make_test_image

VALID = make_test_image("esp32s3", "1.2.0", size=2048)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_refuse(data: bytes) -> None:
    try:
        validate_image(data, chip=CHIPS["esp32s3"], version="1.2.0")
    except ImageError as exc:
        assert exc.reason and exc.code


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _parse_or_refuse(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_behind_a_valid_magic(tail: bytes) -> None:
    _parse_or_refuse(b"\xe9" + tail)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_valid_image(edits: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for offset, value in edits:
        data[offset] = value
    _parse_or_refuse(bytes(data))


@FUZZ
@given(st.integers(0, len(VALID)), st.binary(max_size=64), st.integers(0, len(VALID)))
def test_spliced_and_truncated_valid_image(start: int, junk: bytes, cut: int) -> None:
    _parse_or_refuse((VALID[:start] + junk + VALID[start:])[:cut])


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.integers(1, 255))
def test_any_single_byte_change_is_refused(offset: int, xor: int) -> None:
    data = bytearray(VALID)
    data[offset] ^= xor
    try:
        validate_image(bytes(data), chip=CHIPS["esp32s3"], version="1.2.0")
    except ImageError:
        return
    raise AssertionError(f"a change at offset {offset} went unnoticed")
