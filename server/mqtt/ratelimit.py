"""Logging that a flood of bad input can't turn into a flood of log lines."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLogger:
    """At most `per_window` lines per key per `window` seconds; the rest are counted.

    When a window with suppressed lines ends, the next line for that key says how many were
    left out, so an operator knows the log is a sample.
    """

    def __init__(
        self,
        logger: logging.Logger,
        per_window: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._per_window = per_window
        self._window = window
        self._clock = clock
        self._state: dict[str, tuple[float, int, int]] = {}  # key -> (start, logged, suppressed)

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        now = self._clock()
        start, logged, suppressed = self._state.get(key, (now, 0, 0))
        if now - start >= self._window:
            if suppressed:
                self._logger.log(
                    level,
                    "%d more %r messages suppressed in the last %.0fs",
                    suppressed,
                    key,
                    self._window,
                )
            start, logged, suppressed = now, 0, 0
        if logged >= self._per_window:
            self._state[key] = (start, logged, suppressed + 1)
            return False
        self._state[key] = (start, logged + 1, suppressed)
        self._logger.log(level, msg, *args, exc_info=exc_info)
        return True
