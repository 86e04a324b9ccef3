"""Where release folders live: the ReleaseStore port, and its local-directory adapter.

This is the one object-store protocol of the project: the release tool writes through it
and the control plane's firmware catalog reads (and writes the block list) through it.
Stores take keys relative to the release root (``esp32s3/production/version.txt``)
and verify every write by reading the object back and comparing its SHA-256, so a
publish that returns has really landed. Every failure is a StoreError with the reason.
The S3 adapter is in ``s3.py``; ``roots.py`` opens either from a root string.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

ProgressCallback = Callable[[int], None]


class StoreError(RuntimeError):
    pass


class ReleaseStore(Protocol):
    def describe(self, key: str = "") -> str: ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        ...

    def write(self, key: str, data: bytes, *, progress: ProgressCallback | None = None) -> None:
        """Store ``data`` at ``key`` (readers see the old or the new object, never a mix)."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder, with trailing '/'), sorted."""
        ...


def check_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in path.parts):
        raise StoreError(f"refusing key {key!r}: it would leave the release root")
    return key


def content_type(key: str) -> str:
    if key.endswith(".json"):
        return "application/json"
    if key.endswith(".txt"):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.describe(key)}: {exc.strerror or exc}") from None

    def write(self, key: str, data: bytes, *, progress: ProgressCallback | None = None) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write beside the target and rename over it: the rename is atomic, so a
            # server reading the folder never sees half a firmware.bin.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as handle:
                    for start in range(0, max(len(data), 1), 1 << 16):
                        handle.write(data[start : start + (1 << 16)])
                        if progress:
                            progress(len(data[start : start + (1 << 16)]))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write {self.describe(key)}: {exc.strerror or exc}") from None
        verify_written(self, key, data)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        try:
            if not base.is_dir():
                return []
            return sorted(
                path.relative_to(self.root).as_posix()
                for path in base.rglob("*")
                if path.is_file() and not path.name.startswith(".")
            )
        except OSError as exc:
            raise StoreError(f"cannot list {self.describe(prefix)}: {exc.strerror or exc}") from None


def verify_written(store: ReleaseStore, key: str, data: bytes) -> None:
    stored = store.read(key)
    expected = hashlib.sha256(data).hexdigest()
    actual = None if stored is None else hashlib.sha256(stored).hexdigest()
    if actual != expected:
        raise StoreError(
            f"upload check failed for {store.describe(key)}: SHA-256 {actual or 'missing'} "
            f"after writing, expected {expected}"
        )
