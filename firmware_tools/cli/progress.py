"""A one-line upload progress bar on stderr (no dependency: the tool runs in bare CI images)."""

from __future__ import annotations

import time
from typing import TextIO

_WIDTH = 30


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


class ProgressBar:
    """Redraws in place when ``enabled`` (a terminal); otherwise prints one line at the end,
    so logs in CI get a record of each upload without carriage-return noise."""

    def __init__(self, label: str, total: int, stream: TextIO, *, enabled: bool) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = stream
        self.enabled = enabled
        self.done = 0
        self._last_draw = 0.0

    def __call__(self, amount: int) -> None:
        self.done = min(self.total, self.done + amount)
        now = time.monotonic()
        if self.enabled and (now - self._last_draw > 0.05 or self.done >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def _line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(_WIDTH * fraction)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        return f"  {self.label} [{bar}] {fraction * 100:3.0f}% {human_size(self.done)}/{human_size(self.total)}"

    def finish(self) -> None:
        self.done = self.total
        prefix = "\r" if self.enabled else ""
        self.stream.write(prefix + self._line() + "\n")
        self.stream.flush()
