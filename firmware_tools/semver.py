"""Semantic versions (semver.org 2.0.0): parsing and precedence.

Pure and dependency-free so the server's firmware catalog can import it as well.
A parsed version is also safe as a path segment: the grammar admits no '/', no '\\'
and no '..', which is why release folders are named only from parsed versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
# Longer strings cannot fit esp_app_desc_t.version (32 bytes with the terminating NUL).
MAX_LENGTH = 31


class InvalidVersionError(ValueError):
    pass


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    @property
    def folder(self) -> str:
        """The release folder name, e.g. ``v1.2.0``."""
        return f"v{self}"

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after all of its pre-releases; numeric identifiers sort
        # numerically and before alphanumeric ones (semver rule 11).
        pre = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def parse_version(text: str, *, allow_v_prefix: bool = True) -> Version:
    """Parse ``1.2.0`` (or ``v1.2.0``); raise InvalidVersionError with the reason."""
    if not isinstance(text, str):
        raise InvalidVersionError(f"version must be a string, not {type(text).__name__}")
    raw = text.strip()
    if allow_v_prefix and raw[:1] in ("v", "V"):
        raw = raw[1:]
    if len(raw) > MAX_LENGTH:
        raise InvalidVersionError(f"invalid version {text!r}: longer than {MAX_LENGTH} characters")
    match = _SEMVER.match(raw)
    if match is None:
        raise InvalidVersionError(
            f"invalid version {text!r}: expected semantic version MAJOR.MINOR.PATCH"
            "[-PRERELEASE][+BUILD], e.g. 1.2.0 or 1.3.0-rc.1"
        )
    pre = match.group("pre")
    build = match.group("build")
    return Version(
        int(match.group("major")),
        int(match.group("minor")),
        int(match.group("patch")),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )


def is_valid_version(text: str) -> bool:
    try:
        parse_version(text)
    except InvalidVersionError:
        return False
    return True
