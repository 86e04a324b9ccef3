"""The command line as a release engineer meets it: one command per step, reasons on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import image, run, write_keys


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "firmware_tools", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for command in (
        "inspect",
        "validate",
        "make-test-image",
        "keygen",
        "build",
        "promote",
        "block",
        "unblock",
        "publish",
        "verify",
    ):
        assert command in result.stdout


def test_from_bin_to_verified_published_release(work: Path) -> None:
    root, published = str(work / "dist"), str(work / "published")
    app = str(work / "app.bin")
    key, pub = str(work / "k.pem"), str(work / "k.pub.pem")
    assert (
        run(
            "make-test-image",
            "--chip",
            "esp32s3",
            "--version",
            "1.2.0",
            "--size",
            "300KB",
            "--secure-version",
            "1",
            "--out",
            app,
        ).code
        == 0
    )
    assert Path(app).stat().st_size == 300 * 1024
    assert run("keygen", "--key", key, "--public-key", pub).code == 0
    assert oct(Path(key).stat().st_mode & 0o777) == "0o600"
    built = run("build", app, "--version", "1.2.0", "--key", key, "--root", root, "--json")
    assert built.code == 0, built.err
    assert built.json["metadata"]["secure_version"] == 1
    assert run("promote", "1.2.0", "--root", root).code == 0
    verified = run("verify", "--root", root, "--public-key", pub)
    assert verified.code == 0, verified.err
    assert "OK: consistent, signatures valid" in verified.out
    published_run = run("publish", "--root", root, "--to", published, "--public-key", pub, "--json")
    assert published_run.code == 0, published_run.err
    assert published_run.json["production"] == "1.2.0"
    assert len(published_run.json["uploaded"]) == 5
    assert "firmware.bin [" in published_run.err  # the progress record per upload
    assert run("verify", "--root", published, "--public-key", pub).code == 0


def test_inspect_prints_fields_and_json(work: Path) -> None:
    app = work / "app.bin"
    app.write_bytes(image())
    text = run("inspect", str(app))
    assert text.code == 0
    for label in (
        "chip id            9 (esp32s3)",
        "entry point",
        "checksum",
        "appended SHA-256",
        "version            1.2.0",
        "project name",
        "IDF version",
        "Result: valid",
    ):
        assert label in text.out
    data = run("inspect", str(app), "--json").json
    assert data["ok"] and data["image"]["app_descriptor"]["version"] == "1.2.0"
    assert data["image"]["segments"][0]["load_address"] == 0x3C000020


def test_inspect_of_a_corrupt_image_shows_it_and_fails(work: Path) -> None:
    data = bytearray(image())
    data[100] ^= 0xFF
    app = work / "bad.bin"
    app.write_bytes(bytes(data))
    result = run("inspect", str(app), "--json")
    assert result.code == 1
    assert result.err.startswith("error: bad checksum: stored 0x")
    assert result.json["ok"] is False and result.json["error"] == "bad_checksum"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["validate", "{app}", "--version", "1.3.0"], "differs from the release version '1.3.0'"),
        (["validate", "{app}", "--platform", "esp32c3"], "does not match the target platform"),
        (["validate", "{missing}"], "cannot read"),
        (
            ["build", "{app}", "--version", "1.2.0", "--platform", "../x", "--chip", "esp32s3", "--key", "{key}"],
            "invalid platform '../x'",
        ),
        (["build", "{app}", "--version", "../../1.2.0", "--key", "{key}"], "invalid version"),
        (["build", "{app}", "--version", "1.2.0"], "no signing key"),
        (["promote", "1.2.0"], "no release v1.2.0"),
        (["promote", "1.2.0", "--force"], "--force needs --reason"),
        (["unblock", "1.0.0"], "1.0.0 is not blocked"),
        (["verify"], "no public key"),
        (["publish"], "nowhere to publish"),
        (["build", "{app}", "--version", "1.2.0", "--key", "{key}", "--root", "ftp://x"], "unsupported release root"),
    ],
)
def test_refusals_exit_non_zero_with_the_reason_on_stderr(work: Path, args: list[str], reason: str) -> None:
    app = work / "app.bin"
    app.write_bytes(image())
    key, _ = write_keys(work)
    values = {"app": str(app), "missing": str(work / "nope.bin"), "key": str(key)}
    argv = [a.format(**values) for a in args]
    if "--root" not in argv:
        argv += ["--root", str(work / "dist")]
    result = run(*argv)
    assert result.code == 1
    assert result.err.startswith("error: ")
    assert reason in result.err


def test_json_refusal_is_machine_readable(work: Path) -> None:
    result = run("promote", "1.2.0", "--root", str(work), "--json")
    assert result.code == 1
    assert result.json == {"ok": False, "error": "not_found", "reason": result.err[7:].strip()}


def test_root_defaults_to_firmware_root_and_key_to_env(work: Path) -> None:
    app = work / "app.bin"
    app.write_bytes(image())
    key, pub = write_keys(work)
    env = {
        "FIRMWARE_ROOT": str(work / "env-root"),
        "FIRMWARE_SIGNING_KEY_FILE": str(key),
        "FIRMWARE_PUBLIC_KEY_FILE": str(pub),
    }
    assert run("build", str(app), "--version", "1.2.0", env=env).code == 0
    assert (work / "env-root/esp32s3/releases/v1.2.0/metadata.json").exists()
    assert run("verify", env=env).code == 0


def test_block_production_needs_promote_flag(work: Path) -> None:
    key, pub = write_keys(work)
    root = str(work / "dist")
    for version in ("1.1.0", "1.2.0"):
        app = work / f"{version}.bin"
        app.write_bytes(image(version))
        assert run("build", str(app), "--version", version, "--key", str(key), "--root", root).code == 0
    assert run("promote", "1.2.0", "--root", root).code == 0
    refused = run("block", "1.2.0", "--reason", "boot loop", "--root", root)
    assert refused.code == 1 and "it is the production version" in refused.err
    done = run("block", "1.2.0", "--reason", "boot loop", "--promote", "1.1.0", "--root", root)
    assert done.code == 0, done.err
    assert "promoted 1.1.0 to production" in done.out
    assert run("verify", "--root", root, "--public-key", str(pub)).code == 0
    assert run("unblock", "1.2.0", "--root", root).code == 0
