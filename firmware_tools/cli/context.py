"""What a command handler gets from the outside world: arguments, environment, output streams.

Its own module so the parser (main.py) and the handlers (commands.py) both depend on it and
never on each other's module in a circle.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any, TextIO

from firmware_tools.chips import CHIPS, Chip, UnknownChipError, chip_by_name
from firmware_tools.roots import default_root


class Context:
    """What a command needs from the outside world, injectable for tests."""

    def __init__(self, args: argparse.Namespace, env: Mapping[str, str], out: TextIO, err: TextIO) -> None:
        self.args = args
        self.env = env
        self.out = out
        self.err = err

    @property
    def root(self) -> str:
        return str(self.args.root or default_root(self.env))

    @property
    def platform(self) -> str:
        return str(self.args.platform)

    def chip(self, *, required: bool) -> Chip | None:
        name = getattr(self.args, "chip", None)
        if name:
            return chip_by_name(name)
        if self.platform in CHIPS:
            return CHIPS[self.platform]
        if required:
            raise UnknownChipError(
                f"platform {self.platform!r} is not a chip name; pass --chip (one of {', '.join(CHIPS)})"
            )
        return None

    def emit(self, data: dict[str, Any], text: str) -> None:
        if self.args.json:
            self.out.write(json.dumps({"ok": True, **data}, indent=2, sort_keys=True) + "\n")
        elif text:
            self.out.write(text.rstrip("\n") + "\n")

    def warn(self, message: str) -> None:
        self.err.write(f"warning: {message}\n")
