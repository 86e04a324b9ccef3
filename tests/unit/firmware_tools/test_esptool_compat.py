"""Generated images are valid by esptool's rules, not only by our own parser.

esptool is a test-only cross-check (the tool never imports it): its loader must accept
each image with a valid checksum and digest and find our app descriptor, and its own
image writer, given the same segments, must produce exactly our bytes.
"""

from __future__ import annotations

import pytest

from firmware_tools.chips import CHIPS
from firmware_tools.image import parse_image
from firmware_tools.testimage import make_test_image

bin_image = pytest.importorskip("esptool.bin_image")
cmds = pytest.importorskip("esptool.cmds")


@pytest.mark.parametrize("chip", sorted(CHIPS))
@pytest.mark.parametrize("size", [1024, 300 * 1024, 2 * 65536 + 48])
def test_esptool_writes_the_same_bytes(chip: str, size: int) -> None:
    data = make_test_image(chip, "1.2.0", size=size, secure_version=2)
    loaded = bin_image.LoadFirmwareImage(chip, data)
    assert loaded.checksum == loaded.calculate_checksum()
    assert loaded.stored_digest == loaded.calc_digest
    assert loaded.chip_id == CHIPS[chip].chip_id

    rebuilt = type(loaded)()
    for name in ("flash_mode", "flash_size_freq", "entrypoint", "min_rev", "min_rev_full"):
        setattr(rebuilt, name, getattr(loaded, name))
    rebuilt.max_rev_full = loaded.max_rev_full
    # Naming the descriptor's section as ESP-IDF does lets esptool place it first.
    names = [b".flash.appdesc", b".flash.text", b".dram0.data", b".iram0.text"]
    rebuilt.segments = [
        bin_image.ELFSection(name, seg.addr, seg.data, 0) for name, seg in zip(names, loaded.segments, strict=True)
    ]
    assert rebuilt.save(None) == data


def test_esptool_image_info_reads_our_descriptor(capsys: pytest.CaptureFixture[str]) -> None:
    data = make_test_image("esp32s3", "3.4.5", size=4096, secure_version=7, project_name="demo")
    cmds.image_info(data)
    out = capsys.readouterr().out
    assert "Checksum: " in out and "(valid)" in out
    assert "Validation hash: " in out and "invalid" not in out
    assert "App version: 3.4.5" in out
    assert "Project name: demo" in out
    assert "Secure version: 7" in out
    assert parse_image(data).app_descriptor is not None
