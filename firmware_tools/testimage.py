"""Synthetic but valid ESP32-family app images, for tests, the simulator and demos.

Real firmware cannot ship in the repository, so this writes what esptool's
``elf2image`` would write for a small app: a DROM segment starting with esp_app_desc_t
(so it lands at file offset 0x20), an IROM segment at an MMU-page-consistent address,
then DRAM and IRAM segments, the checksum, and the appended SHA-256. Segment contents
are deterministic filler, so the same arguments always give the same bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from firmware_tools.chips import FLASH_MODES, FLASH_SIZES, IROM_ALIGN, Chip, chip_by_name
from firmware_tools.image import (
    APP_DESC_MAGIC,
    APP_DESC_SIZE,
    CHECKSUM_SEED,
    HEADER_SIZE,
    IMAGE_MAGIC,
    SEGMENT_HEADER_SIZE,
    _xor_checksum,
)

# Fixed default so that generated images are reproducible without any environment.
DEFAULT_BUILD_TIME = datetime(2025, 1, 1, tzinfo=UTC)
MIN_SIZE = 1024
WP_PIN_DISABLED = 0xEE
# esptool's default when the ELF carries no revision limit: any future revision.
MAX_REV_FULL_ANY = 0xFFFF
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# ESP-IDF's 2nd-stage bootloader on the original ESP32 failed to map the last MMU page
# when a flash segment ended fewer than 0x24 bytes past a page boundary; esptool pads.
_ESP32_TAIL = 0x24


@dataclass(frozen=True)
class _Seg:
    addr: int
    data: bytes


def parse_size(text: str) -> int:
    """``300KB``, ``1MB``, ``4096``, ``64k`` -> bytes (binary units, as flash sizes are)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)(i?[bB])?\s*", text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: expected e.g. 4096, 300KB or 1MB")
    unit = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(match.group(1)) * unit


def descriptor_date_time(when: datetime) -> tuple[str, str]:
    """The C ``__DATE__``/``__TIME__`` strings IDF stores, e.g. ``Jan  2 2025``, ``13:04:05``."""
    when = when.astimezone(UTC)
    return (
        f"{MONTHS[when.month - 1]} {when.day:2d} {when.year}",
        when.strftime("%H:%M:%S"),
    )


def _cstr(text: str, size: int, field: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= size:
        raise ValueError(f"{field} {text!r} does not fit esp_app_desc_t ({size - 1} bytes max)")
    return raw.ljust(size, b"\0")


def app_descriptor(
    *,
    version: str,
    project_name: str,
    idf_version: str,
    secure_version: int,
    build_time: datetime,
    elf_sha256: bytes,
) -> bytes:
    date, time = descriptor_date_time(build_time)
    return struct.pack(
        "<II8s32s32s16s16s32s32sHHB3s72s",
        APP_DESC_MAGIC,
        secure_version,
        b"",
        _cstr(version, 32, "version"),
        _cstr(project_name, 32, "project name"),
        _cstr(time, 16, "time"),
        _cstr(date, 16, "date"),
        _cstr(idf_version, 32, "IDF version"),
        elf_sha256,
        0,
        0,
        16,  # log2 of the 64 KB MMU page, as IDF 5 records it
        b"",
        b"",
    )


def _filler(seed: bytes, role: str, length: int) -> bytes:
    return hashlib.shake_256(seed + role.encode()).digest(length)


def _pad_esp32_tail(chip: Chip, file_pos: int, length: int) -> int:
    if chip.mmu_tail_workaround:
        remainder = (file_pos + SEGMENT_HEADER_SIZE + length) % IROM_ALIGN
        if remainder < _ESP32_TAIL:
            length += _ESP32_TAIL - remainder
    return length


def make_test_image(
    chip: str | Chip,
    version: str,
    *,
    size: int = 256 * 1024,
    secure_version: int = 0,
    project_name: str = "fleet-demo",
    idf_version: str = "v5.3.1",
    build_time: datetime = DEFAULT_BUILD_TIME,
    hash_appended: bool = True,
    flash_mode: str = "dio",
    flash_size: str = "4MB",
    min_rev_full: int = 0,
    max_rev_full: int = MAX_REV_FULL_ANY,
) -> bytes:
    """Return a valid app image of exactly ``size`` bytes, rounded up to a multiple of 16."""
    target = chip if isinstance(chip, Chip) else chip_by_name(chip)
    if size < MIN_SIZE:
        raise ValueError(f"size {size} is too small: a test image needs at least {MIN_SIZE}")
    if not 0 <= secure_version <= 0xFFFFFFFF:
        raise ValueError(f"secure version {secure_version} is outside 0..4294967295")
    if flash_mode not in FLASH_MODES:
        raise ValueError(f"unknown flash mode {flash_mode!r} (known: {', '.join(FLASH_MODES)})")
    if flash_size not in FLASH_SIZES:
        raise ValueError(f"unknown flash size {flash_size!r} (known: {', '.join(FLASH_SIZES)})")
    total = -(-size // 16) * 16
    seed = f"{target.name}|{version}|{project_name}|{secure_version}|{total}".encode()
    descriptor = app_descriptor(
        version=version,
        project_name=project_name,
        idf_version=idf_version,
        secure_version=secure_version,
        build_time=build_time,
        elf_sha256=hashlib.sha256(seed + b"elf").digest(),
    )
    # Segment data ends 12 bytes into a 16-byte block, so 3 padding bytes and the
    # checksum complete the block and the requested size comes out exactly.
    tail = 4 + (32 if hash_appended else 0)
    budget = total - tail - HEADER_SIZE - 4 * SEGMENT_HEADER_SIZE
    dram_len = 64 if budget < 4096 else 1024
    drom_len = max(APP_DESC_SIZE, budget * 3 // 10 // 4 * 4)
    drom_len = _pad_esp32_tail(target, HEADER_SIZE, drom_len)
    # RAM segments stay small (real IRAM is a few hundred KB); code in flash takes the rest.
    iram_len = min(0x8000, budget // 10 // 4 * 4)
    irom_pos = HEADER_SIZE + SEGMENT_HEADER_SIZE + drom_len
    irom_len = budget - drom_len - dram_len - iram_len
    padded = _pad_esp32_tail(target, irom_pos, irom_len)
    iram_len -= padded - irom_len
    irom_len = padded
    # Flash-mapped data must sit at a file offset congruent to its address modulo the
    # MMU page; choosing the address to fit the offset avoids esptool's padding segments.
    irom_addr = target.irom[0] + (irom_pos + SEGMENT_HEADER_SIZE) % IROM_ALIGN
    flash = [
        _Seg(target.drom[0] + 0x20, descriptor + _filler(seed, "drom", drom_len - APP_DESC_SIZE)),
        _Seg(irom_addr, _filler(seed, "irom", irom_len)),
    ]
    ram = sorted(
        [
            _Seg(target.dram_addr, _filler(seed, "dram", dram_len)),
            _Seg(target.iram_addr, _filler(seed, "iram", iram_len)),
        ],
        key=lambda seg: seg.addr,
    )
    segments = flash + ram
    header = struct.pack(
        "<BBBBI",
        IMAGE_MAGIC,
        len(segments),
        FLASH_MODES[flash_mode],
        FLASH_SIZES[flash_size],  # frequency code 0 is every chip's default
        target.iram_addr,
    ) + struct.pack(
        "<BBBBHBHH4sB",
        WP_PIN_DISABLED,
        0,
        0,
        0,
        target.chip_id,
        min_rev_full // 100,
        min_rev_full,
        max_rev_full,
        b"",
        1 if hash_appended else 0,
    )
    body = bytearray(header)
    checksum = CHECKSUM_SEED
    for seg in segments:
        body += struct.pack("<II", seg.addr, len(seg.data)) + seg.data
        checksum = _xor_checksum(seg.data, checksum)
    body += b"\0" * (15 - len(body) % 16)
    body.append(checksum)
    if hash_appended:
        body += hashlib.sha256(body).digest()
    assert len(body) == total, (len(body), total)
    return bytes(body)
