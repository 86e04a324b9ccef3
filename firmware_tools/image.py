"""Parse and check ESP32-family app images the way esptool's ``image_info`` reads them.

Layout (little-endian): a 24-byte header (8 common + 16 extended), up to 16 segments of
``<load address u32, length u32, data>``, zero padding to the byte before a 16-byte
boundary, the XOR checksum byte (seed 0xEF, over segment data only), then, when
``hash_appended`` (header byte 23) is 1, the SHA-256 of everything before it.
esp_app_desc_t starts the first segment's data, at file offset 0x20.

``parse_image`` raises ImageError only for structure it cannot read; ``check_image``
then decides whether the image is acceptable, so ``inspect`` can show a corrupt image.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass
from typing import Any

from firmware_tools.chips import Chip, chip_by_id, flash_mode_name, flash_size_name
from firmware_tools.semver import InvalidVersionError, parse_version

IMAGE_MAGIC = 0xE9
CHECKSUM_SEED = 0xEF
APP_DESC_MAGIC = 0xABCD5432
APP_DESC_OFFSET = 0x20
APP_DESC_SIZE = 256
HEADER_SIZE = 24
SEGMENT_HEADER_SIZE = 8
MAX_SEGMENTS = 16
MAX_SEGMENT_LENGTH = 0x1000000
DIGEST_SIZE = 32

_COMMON_HEADER = struct.Struct("<BBBBI")
_EXTENDED_HEADER = struct.Struct("<BBBBHBHH4sB")
_SEGMENT_HEADER = struct.Struct("<II")
_APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")


class ImageError(ValueError):
    """An image was refused; ``code`` is stable for machines, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Segment:
    index: int
    load_address: int
    length: int
    header_offset: int
    memory_type: str

    @property
    def data_offset(self) -> int:
        return self.header_offset + SEGMENT_HEADER_SIZE


@dataclass(frozen=True)
class AppDescriptor:
    secure_version: int
    version: str
    project_name: str
    time: str
    date: str
    idf_version: str
    app_elf_sha256: str
    min_efuse_blk_rev_full: int
    max_efuse_blk_rev_full: int
    mmu_page_size: int


@dataclass(frozen=True)
class FirmwareImage:
    size: int
    sha256: str
    segment_count: int
    flash_mode: int
    flash_mode_name: str | None
    flash_size: str | None
    flash_freq: str | None
    flash_size_freq: int
    entry_point: int
    wp_pin: int
    spi_drive: int
    chip_id: int
    chip: str | None
    min_rev: int
    min_rev_full: int
    max_rev_full: int
    hash_appended: bool
    segments: tuple[Segment, ...]
    checksum_offset: int
    checksum_stored: int
    checksum_computed: int
    digest_stored: str | None
    digest_computed: str | None
    app_descriptor: AppDescriptor | None
    app_descriptor_magic: int | None
    trailing_bytes: int

    @property
    def checksum_valid(self) -> bool:
        return self.checksum_stored == self.checksum_computed

    @property
    def digest_valid(self) -> bool | None:
        return None if not self.hash_appended else self.digest_stored == self.digest_computed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checksum_valid"] = self.checksum_valid
        data["digest_valid"] = self.digest_valid
        return data


def _text(raw: bytes) -> str:
    """A C char[] field as readable text: up to the NUL, control characters escaped."""
    raw = raw.split(b"\0", 1)[0]
    text = raw.decode("utf-8", errors="backslashreplace")
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _xor_checksum(data: bytes, seed: int) -> int:
    # XOR is associative, so folding 8 bytes at a time gives the same byte much faster.
    whole = len(data) - len(data) % 8
    acc = 0
    for (word,) in struct.iter_unpack("<Q", data[:whole]):
        acc ^= word
    value = seed
    for shift in range(0, 64, 8):
        value ^= (acc >> shift) & 0xFF
    for byte in data[whole:]:
        value ^= byte
    return value


def _parse_app_descriptor(data: bytes, first: Segment | None) -> tuple[AppDescriptor | None, int | None]:
    if first is None or first.data_offset != APP_DESC_OFFSET or first.length < APP_DESC_SIZE:
        magic = None
        if len(data) >= APP_DESC_OFFSET + 4:
            magic = struct.unpack_from("<I", data, APP_DESC_OFFSET)[0]
        return None, magic
    fields = _APP_DESC.unpack_from(data, APP_DESC_OFFSET)
    magic = fields[0]
    if magic != APP_DESC_MAGIC:
        return None, magic
    return (
        AppDescriptor(
            secure_version=fields[1],
            version=_text(fields[3]),
            project_name=_text(fields[4]),
            time=_text(fields[5]),
            date=_text(fields[6]),
            idf_version=_text(fields[7]),
            app_elf_sha256=fields[8].hex(),
            min_efuse_blk_rev_full=fields[9],
            max_efuse_blk_rev_full=fields[10],
            mmu_page_size=fields[11],
        ),
        magic,
    )


def parse_image(data: bytes) -> FirmwareImage:
    """Read an app image's structure; raise ImageError when it cannot be read."""
    size = len(data)
    if size < HEADER_SIZE:
        if size >= 1 and data[0] != IMAGE_MAGIC:
            raise ImageError("bad_magic", _magic_reason(data[0]))
        raise ImageError(
            "truncated",
            f"truncated: the file is {size} bytes, shorter than the {HEADER_SIZE}-byte image header",
        )
    magic, count, flash_mode, size_freq, entry = _COMMON_HEADER.unpack_from(data, 0)
    if magic != IMAGE_MAGIC:
        raise ImageError("bad_magic", _magic_reason(magic))
    wp_pin, drv1, drv2, drv3, chip_id, min_rev, min_full, max_full, _, hash_flag = _EXTENDED_HEADER.unpack_from(data, 8)
    if hash_flag not in (0, 1):
        raise ImageError(
            "bad_header",
            f"invalid hash_appended byte 0x{hash_flag:02x} at offset 23 (must be 0 or 1)",
        )
    if not 1 <= count <= MAX_SEGMENTS:
        raise ImageError(
            "bad_segment_count",
            f"invalid segment count {count} at offset 1 (an app image has 1 to {MAX_SEGMENTS})",
        )
    chip = chip_by_id(chip_id)
    segments: list[Segment] = []
    checksum = CHECKSUM_SEED
    pos = HEADER_SIZE
    for index in range(count):
        if pos + SEGMENT_HEADER_SIZE > size:
            raise ImageError(
                "truncated",
                f"truncated: segment {index} header at offset 0x{pos:x} is cut off (the file ends at 0x{size:x})",
            )
        addr, length = _SEGMENT_HEADER.unpack_from(data, pos)
        if length % 4:
            raise ImageError(
                "bad_segment",
                f"segment {index} (load address 0x{addr:08x}) has length {length}, not a multiple of 4",
            )
        if length >= MAX_SEGMENT_LENGTH:
            raise ImageError(
                "bad_segment",
                f"segment {index} (load address 0x{addr:08x}) has length 0x{length:x}, over the 16 MB limit",
            )
        start = pos + SEGMENT_HEADER_SIZE
        if start + length > size:
            raise ImageError(
                "truncated",
                f"truncated: segment {index} (load address 0x{addr:08x}, length {length}) "
                f"at offset 0x{pos:x} runs past the end of the file at 0x{size:x}",
            )
        checksum = _xor_checksum(data[start : start + length], checksum)
        memory = chip.memory_type(addr) if chip else "?"
        segments.append(Segment(index, addr, length, pos, memory))
        pos = start + length
    checksum_offset = pos + 15 - pos % 16
    if checksum_offset >= size:
        raise ImageError(
            "truncated",
            f"truncated: the checksum byte at offset 0x{checksum_offset:x} is missing (the file ends at 0x{size:x})",
        )
    end = checksum_offset + 1
    digest_stored = digest_computed = None
    if hash_flag:
        if end + DIGEST_SIZE > size:
            raise ImageError(
                "truncated",
                f"truncated: the appended SHA-256 at offset 0x{end:x} is missing or short "
                f"(the file ends at 0x{size:x})",
            )
        digest_stored = data[end : end + DIGEST_SIZE].hex()
        digest_computed = hashlib.sha256(data[:end]).hexdigest()
        end += DIGEST_SIZE
    descriptor, desc_magic = _parse_app_descriptor(data, segments[0])
    return FirmwareImage(
        size=size,
        sha256=hashlib.sha256(data).hexdigest(),
        segment_count=count,
        flash_mode=flash_mode,
        flash_mode_name=flash_mode_name(flash_mode),
        flash_size=flash_size_name(size_freq & 0xF0),
        flash_freq=chip.flash_freq_name(size_freq & 0x0F) if chip else None,
        flash_size_freq=size_freq,
        entry_point=entry,
        wp_pin=wp_pin,
        spi_drive=drv1 | drv2 << 8 | drv3 << 16,
        chip_id=chip_id,
        chip=chip.name if chip else None,
        min_rev=min_rev,
        min_rev_full=min_full,
        max_rev_full=max_full,
        hash_appended=bool(hash_flag),
        segments=tuple(segments),
        checksum_offset=checksum_offset,
        checksum_stored=data[checksum_offset],
        checksum_computed=checksum,
        digest_stored=digest_stored,
        digest_computed=digest_computed,
        app_descriptor=descriptor,
        app_descriptor_magic=desc_magic,
        trailing_bytes=size - end,
    )


def _magic_reason(magic: int) -> str:
    return (
        f"wrong magic byte 0x{magic:02x} at offset 0 (an ESP32 app image starts with "
        f"0x{IMAGE_MAGIC:02X}); is this an ELF, a merged flash dump or a partition table?"
    )


def check_image(image: FirmwareImage, *, chip: Chip | None = None, version: str | None = None) -> None:
    """Raise ImageError with the first reason this image must not be released."""
    if not image.checksum_valid:
        raise ImageError(
            "bad_checksum",
            f"bad checksum: stored 0x{image.checksum_stored:02x} at offset "
            f"0x{image.checksum_offset:x}, computed 0x{image.checksum_computed:02x} over the "
            "segment data",
        )
    if image.hash_appended and image.digest_stored != image.digest_computed:
        raise ImageError(
            "bad_hash",
            f"bad hash: the appended SHA-256 {image.digest_stored} does not match the "
            f"image's SHA-256 {image.digest_computed}",
        )
    if image.app_descriptor is None:
        found = "nothing" if image.app_descriptor_magic is None else f"0x{image.app_descriptor_magic:08x}"
        raise ImageError(
            "missing_app_descriptor",
            f"missing app descriptor: no esp_app_desc_t (magic 0x{APP_DESC_MAGIC:08X}) at "
            f"offset 0x{APP_DESC_OFFSET:x} in the first segment (found {found})",
        )
    if chip is not None and image.chip_id != chip.chip_id:
        actual = image.chip or "unknown chip"
        raise ImageError(
            "chip_mismatch",
            f"chip id {image.chip_id} ({actual}) does not match the target platform's chip "
            f"{chip.name} (chip id {chip.chip_id})",
        )
    if version is not None:
        _check_version(image.app_descriptor.version, version)


def _check_version(embedded: str, release: str) -> None:
    try:
        same = str(parse_version(embedded)) == str(parse_version(release))
    except InvalidVersionError:
        same = False
    if not same:
        raise ImageError(
            "version_mismatch",
            f"the app descriptor's version {embedded!r} differs from the release version {release!r}",
        )


def validate_image(data: bytes, *, chip: Chip | None = None, version: str | None = None) -> FirmwareImage:
    image = parse_image(data)
    check_image(image, chip=chip, version=version)
    return image
