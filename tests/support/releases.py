"""Firmware release folders for OTA tests, made by firmware_tools' own CLI (make-test-image,
build, promote, block, publish), so the server reads exactly what release engineers write."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_tools.cli.main import main
from firmware_tools.signing import generate_key_pair, load_public_key

PLATFORM = "esp32s3"


def tool(*argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `python -m firmware_tools ... --json` in-process; fail the test on a refusal."""
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--json"], env=env or {}, stdout=out, stderr=err)
    assert code == 0, f"firmware_tools {' '.join(argv)} failed: {err.getvalue()}"
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


@dataclass(frozen=True)
class ReleaseRoot:
    root: Path
    private_key: Path
    public_key: Path

    @property
    def public_pem(self) -> str:
        return self.public_key.read_text()

    def verifier(self) -> Ed25519PublicKey:
        return load_public_key(self.public_key.read_bytes())

    def build(self, version: str, size: str = "64KB", secure_version: int = 0) -> None:
        image = self.root.parent / f"app-{version}.bin"
        tool(
            "make-test-image",
            "--chip",
            PLATFORM,
            "--version",
            version,
            "--size",
            size,
            "--secure-version",
            str(secure_version),
            "--out",
            str(image),
        )
        tool("build", str(image), "--version", version, "--key", str(self.private_key), "--root", str(self.root))

    def promote(self, version: str, *extra: str) -> None:
        tool("promote", version, "--root", str(self.root), *extra)

    def block(self, version: str, reason: str, *extra: str) -> None:
        tool("block", version, "--reason", reason, "--root", str(self.root), *extra)

    def publish(self, destination: str, env: dict[str, str]) -> None:
        tool("publish", "--root", str(self.root), "--to", destination, "--public-key", str(self.public_key), env=env)


def release_root(work: Path, versions: tuple[str, ...] = (), production: str | None = None) -> ReleaseRoot:
    """A signing key pair and a release root under `work`, with `versions` built."""
    work.mkdir(parents=True, exist_ok=True)
    private, public = generate_key_pair()
    (work / "signing.pem").write_bytes(private)
    (work / "signing.pub.pem").write_bytes(public)
    rr = ReleaseRoot(work / "firmware", work / "signing.pem", work / "signing.pub.pem")
    rr.root.mkdir(exist_ok=True)
    for version in versions:
        rr.build(version)
    if production:
        rr.promote(production)
    return rr
