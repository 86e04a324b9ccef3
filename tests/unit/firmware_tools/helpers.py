"""Shared test data for the firmware tool: signing keys, images, a CLI runner."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_tools.cli.main import main
from firmware_tools.signing import generate_key_pair, load_private_key
from firmware_tools.testimage import make_test_image


@cache
def key_pair() -> tuple[bytes, bytes]:
    return generate_key_pair()


def private_key() -> Ed25519PrivateKey:
    return load_private_key(key_pair()[0])


def write_keys(folder: Path) -> tuple[Path, Path]:
    private, public = folder / "signing.pem", folder / "signing.pub.pem"
    private.write_bytes(key_pair()[0])
    public.write_bytes(key_pair()[1])
    return private, public


@cache
def image(version: str = "1.2.0", chip: str = "esp32s3", secure_version: int = 0, size: int = 8192) -> bytes:
    return make_test_image(chip, version, size=size, secure_version=secure_version)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def run(*argv: str, env: dict[str, str] | None = None) -> Run:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env or {}, stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())
