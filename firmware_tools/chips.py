"""The ESP32-family chips an app image can target, with the numbers esptool uses for them.

Values mirror esptool's ``targets/*.py`` (IMAGE_CHIP_ID, the flash-mapped address
windows, FLASH_SIZES, FLASH_FREQUENCY) so that our parser and generator agree with
esptool on what an image means, not merely with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Header byte 2. Shared by every chip.
FLASH_MODES: dict[str, int] = {"qio": 0, "qout": 1, "dio": 2, "dout": 3}

# High nibble of header byte 3. esptool defines one table for the whole ESP32 family.
FLASH_SIZES: dict[str, int] = {
    "1MB": 0x00,
    "2MB": 0x10,
    "4MB": 0x20,
    "8MB": 0x30,
    "16MB": 0x40,
    "32MB": 0x50,
    "64MB": 0x60,
    "128MB": 0x70,
}

_ESP32_FREQS: dict[str, int] = {"80m": 0xF, "40m": 0x0, "26m": 0x1, "20m": 0x2}

# The MMU page size: flash-mapped segments must sit at file offsets congruent to their
# load address modulo this, or the bootloader maps the wrong bytes.
IROM_ALIGN = 0x10000


@dataclass(frozen=True)
class Chip:
    name: str
    chip_id: int
    display_name: str
    drom: tuple[int, int]
    irom: tuple[int, int]
    # Where the generator places RAM-loaded segments (inside the chip's DRAM/IRAM).
    dram_addr: int
    iram_addr: int
    flash_freqs: dict[str, int] = field(default_factory=lambda: dict(_ESP32_FREQS))
    # esptool's ESP-IDF 2nd stage bootloader workaround applies to the original ESP32 only.
    mmu_tail_workaround: bool = False

    def is_flash_addr(self, addr: int) -> bool:
        return self.drom[0] <= addr < self.drom[1] or self.irom[0] <= addr < self.irom[1]

    def memory_type(self, addr: int) -> str:
        if self.drom[0] <= addr < self.drom[1]:
            return "DROM"
        if self.irom[0] <= addr < self.irom[1]:
            return "IROM"
        if addr == 0:
            return "PADDING"
        return "RAM"

    def flash_freq_name(self, code: int) -> str | None:
        # The first matching name wins, as in esptool's get_key_from_value.
        return next((name for name, value in self.flash_freqs.items() if value == code), None)


CHIPS: dict[str, Chip] = {
    chip.name: chip
    for chip in (
        Chip(
            "esp32",
            0,
            "ESP32",
            drom=(0x3F400000, 0x3F800000),
            irom=(0x400D0000, 0x40400000),
            dram_addr=0x3FFB0000,
            iram_addr=0x40080000,
            mmu_tail_workaround=True,
        ),
        Chip(
            "esp32s2",
            2,
            "ESP32-S2",
            drom=(0x3F000000, 0x3F3F0000),
            irom=(0x40080000, 0x40B80000),
            dram_addr=0x3FFB0000,
            iram_addr=0x40024000,
        ),
        Chip(
            "esp32c3",
            5,
            "ESP32-C3",
            drom=(0x3C000000, 0x3C800000),
            irom=(0x42000000, 0x42800000),
            dram_addr=0x3FC8A000,
            iram_addr=0x40380000,
        ),
        Chip(
            "esp32s3",
            9,
            "ESP32-S3",
            drom=(0x3C000000, 0x3E000000),
            irom=(0x42000000, 0x44000000),
            dram_addr=0x3FC90000,
            iram_addr=0x40374000,
        ),
        Chip(
            "esp32c2",
            12,
            "ESP32-C2",
            drom=(0x3C000000, 0x3C400000),
            irom=(0x42000000, 0x42400000),
            dram_addr=0x3FCA0000,
            iram_addr=0x4037C000,
            flash_freqs={"60m": 0xF, "30m": 0x0, "20m": 0x1, "15m": 0x2},
        ),
        Chip(
            "esp32c6",
            13,
            "ESP32-C6",
            drom=(0x42800000, 0x43000000),
            irom=(0x42000000, 0x42800000),
            dram_addr=0x40810000,
            iram_addr=0x40800000,
            flash_freqs={"80m": 0x0, "40m": 0x0, "20m": 0x2},
        ),
        Chip(
            "esp32h2",
            16,
            "ESP32-H2",
            drom=(0x42800000, 0x43000000),
            irom=(0x42000000, 0x42800000),
            dram_addr=0x40810000,
            iram_addr=0x40800000,
            flash_freqs={"48m": 0xF, "24m": 0x0, "16m": 0x1, "12m": 0x2},
        ),
    )
}

_BY_ID: dict[int, Chip] = {chip.chip_id: chip for chip in CHIPS.values()}


class UnknownChipError(ValueError):
    pass


def chip_by_name(name: str) -> Chip:
    key = name.strip().lower().replace("-", "")
    try:
        return CHIPS[key]
    except KeyError:
        known = ", ".join(CHIPS)
        raise UnknownChipError(f"unknown chip {name!r} (known: {known})") from None


def chip_by_id(chip_id: int) -> Chip | None:
    return _BY_ID.get(chip_id)


def flash_size_name(code: int) -> str | None:
    return next((name for name, value in FLASH_SIZES.items() if value == code), None)


def flash_mode_name(code: int) -> str | None:
    return next((name for name, value in FLASH_MODES.items() if value == code), None)
