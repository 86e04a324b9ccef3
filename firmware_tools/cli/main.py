"""``python -m firmware_tools``: one command per release step, one shape for all of them.

Every command takes ``--root`` (folder or s3://bucket/prefix), ``--platform`` and
``--json``; the image or version is the positional argument. Refusals exit 1 with the
reason on stderr (and, with --json, as ``{"ok": false, ...}`` on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from firmware_tools.chips import CHIPS, UnknownChipError
from firmware_tools.cli import commands
from firmware_tools.cli.context import Context
from firmware_tools.image import ImageError
from firmware_tools.release import ReleaseError
from firmware_tools.signing import SigningError
from firmware_tools.storage import StoreError

DEFAULT_PLATFORM = "esp32s3"


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--root",
        help="release root: a folder or s3://BUCKET/PREFIX (default: $FIRMWARE_ROOT, else ./dist)",
    )
    group.add_argument(
        "--platform",
        default=DEFAULT_PLATFORM,
        help=f"hardware platform folder (default: {DEFAULT_PLATFORM})",
    )
    group.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    return common


def _chip_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chip",
        choices=sorted(CHIPS),
        help="target chip (default: the platform name, when it is a chip name)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="python -m firmware_tools",
        description="Validate ESP32 app images and build, sign, promote, block, publish and "
        "verify firmware release folders (local or S3).",
        epilog="Example: make-test-image --version 1.2.0 --out app.bin; keygen; "
        "build app.bin --version 1.2.0; promote 1.2.0; verify --public-key "
        "firmware-signing.pub.pem; publish --to s3://bucket",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, handler: Callable[[Context], int]) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        cmd.set_defaults(handler=handler)
        return cmd

    _image_commands(add)
    _release_commands(add)
    return parser


Adder = Callable[[str, str, Callable[[Context], int]], argparse.ArgumentParser]


def _image_commands(add: Adder) -> None:
    cmd = add(
        "inspect",
        "print every header, segment and app-descriptor field of an image",
        commands.inspect,
    )
    cmd.add_argument("image", help="an ESP32-family app image (.bin)")

    cmd = add("validate", "check that an image may be released on the platform", commands.validate)
    cmd.add_argument("image", help="an ESP32-family app image (.bin)")
    cmd.add_argument("--version", help="the release version the image must carry")
    _chip_option(cmd)

    cmd = add(
        "make-test-image",
        "write a synthetic, esptool-valid app image for tests and demos",
        commands.make_test_image,
    )
    cmd.add_argument("--chip", choices=sorted(CHIPS), help="target chip (default: the platform)")
    cmd.add_argument("--version", required=True, help="version stored in the app descriptor")
    cmd.add_argument("--size", default="256KB", help="image size, e.g. 4096, 300KB, 1MB")
    cmd.add_argument("--secure-version", type=int, default=0, help="anti-rollback secure_version")
    cmd.add_argument("--project-name", default="fleet-demo")
    cmd.add_argument("--idf-version", default="v5.3.1")
    cmd.add_argument(
        "--build-time",
        help="ISO 8601 build time for the descriptor (default: $SOURCE_DATE_EPOCH, else "
        "2025-01-01T00:00:00Z, so images are reproducible)",
    )
    cmd.add_argument("--no-hash", action="store_true", help="do not append the SHA-256")
    cmd.add_argument("--out", required=True, help="output file")

    cmd = add("keygen", "create an Ed25519 signing key pair", commands.keygen)
    cmd.add_argument("--key", default="firmware-signing.pem", help="private key file to write")
    cmd.add_argument("--public-key", default="firmware-signing.pub.pem", help="public key file to write")
    cmd.add_argument("--force", action="store_true", help="overwrite existing key files")


def _release_commands(add: Adder) -> None:
    cmd = add("build", "validate, sign and lay out releases/v<version>/", commands.build)
    cmd.add_argument("image", help="the app image (.bin) to release")
    cmd.add_argument("--version", required=True, help="release version, e.g. 1.2.0")
    cmd.add_argument(
        "--key",
        help="Ed25519 private key PEM (default: $FIRMWARE_SIGNING_KEY or $FIRMWARE_SIGNING_KEY_FILE)",
    )
    _chip_option(cmd)

    cmd = add("promote", "make a built release the production firmware", commands.promote)
    cmd.add_argument("version", help="the release version to promote")
    cmd.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="allow a version below the current production",
    )
    cmd.add_argument(
        "--force",
        action="store_true",
        help="allow a lower secure_version (anti-rollback); needs --reason",
    )
    cmd.add_argument("--reason", help="why the anti-rollback override is needed")

    cmd = add("block", "stop a version from being offered to devices", commands.block)
    cmd.add_argument("version", help="the version to block")
    cmd.add_argument("--reason", required=True, help="why it is blocked (recorded)")
    cmd.add_argument(
        "--promote",
        metavar="VERSION",
        help="promote this replacement in the same step (required when blocking the production version)",
    )
    cmd.add_argument("--force", action="store_true", help="allow the replacement's lower secure_version")

    cmd = add("unblock", "remove a version from the block list", commands.unblock)
    cmd.add_argument("version", help="the version to unblock")

    cmd = add("publish", "copy the platform's release folder to S3 or another folder", commands.publish)
    cmd.add_argument("--to", dest="destination", help="s3://BUCKET/PREFIX or a folder (default: s3://$S3_BUCKET)")
    cmd.add_argument(
        "--public-key",
        help="check signatures before publishing (default: $FIRMWARE_PUBLIC_KEY_FILE)",
    )
    cmd.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="allow replacing a newer production at the destination",
    )
    cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    _chip_option(cmd)

    cmd = add("verify", "check a release root for consistency and valid signatures", commands.verify)
    cmd.add_argument("--public-key", help="Ed25519 public key PEM (default: $FIRMWARE_PUBLIC_KEY_FILE)")
    cmd.add_argument(
        "--no-signatures",
        action="store_true",
        help="skip signature checks (when no public key is at hand)",
    )
    _chip_option(cmd)


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "code", type(exc).__name__))


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own usage errors (2) and --help (0)
        return int(exc.code or 0)
    ctx = Context(args, os.environ if env is None else env, out, err)
    try:
        handler: Callable[[Context], int] = args.handler
        return handler(ctx)
    except (
        ImageError,
        ReleaseError,
        StoreError,
        SigningError,
        UnknownChipError,
        ValueError,
    ) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        err.write(f"error: {reason}\n")
        if args.json:
            body = {"ok": False, "error": _error_code(exc), "reason": reason}
            out.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
        return 1
