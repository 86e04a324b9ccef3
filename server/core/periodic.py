"""One runner for the background loops: the offline sweep, the OTA timeout sweep, the rollout
scheduler and the heartbeat flush.

`PeriodicTask` calls an async `tick` every `interval` seconds in one asyncio task, sooner when
its optional `wake` event is set. A tick that raises does not end the loop: the error is logged
and the next tick waits a full interval, wake or not (a store that is down is not hammered).
The log is bounded: the first failure of a run of failures is logged (with its traceback unless
it is a domain error such as Unavailable), repeats at most once per `repeat_log_seconds` with a
count, and the recovery once. `stop()` lets a tick in flight finish (so a flush or a
compare-and-set is never cut in half), up to `timeout` seconds when one is given, and then ends
the task; it is safe to call twice, or before start, and the task can be started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from server.core.errors import DomainError

log = logging.getLogger("server.periodic")

REPEAT_LOG_SECONDS = 60.0


class PeriodicTask:
    def __init__(
        self,
        name: str,
        tick: Callable[[], Awaitable[object]],
        interval: float,
        *,
        wake: asyncio.Event | None = None,
        first_tick_at_start: bool = True,
        logger: logging.Logger = log,
        repeat_log_seconds: float = REPEAT_LOG_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.name = name
        self.interval = interval
        self._tick = tick
        self._wake = wake
        self._first_tick_at_start = first_tick_at_start
        self._log = logger
        self._repeat_log_seconds = repeat_log_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.ticks = 0  # ticks that returned
        self.failures = 0  # ticks that raised, in all
        self.failing_since = 0  # ticks that raised since the last one that returned
        self._last_failure_log = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()  # ends a pause at once; a tick in flight runs to its end
        try:
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                self._log.warning("%s: tick still running %.1fs after stop; cancelled", self.name, timeout)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if not self._first_tick_at_start:
            await self._pause(self.interval, wakeable=True)
        while not self._stopping.is_set():
            if self._wake is not None:
                self._wake.clear()  # a wake set during the tick makes the next one come at once
            try:
                await self._tick()
            except Exception as exc:
                failed = True
                self._failed(exc)
            else:
                failed = False
                self._succeeded()
            await self._pause(self.interval, wakeable=not failed)

    async def _pause(self, seconds: float, *, wakeable: bool) -> None:
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wakeable and self._wake is not None:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.failing_since += 1
        now = self._clock()
        if self.failing_since == 1:
            self._last_failure_log = now
            if isinstance(exc, DomainError):  # expected trouble (the store is down): no traceback
                self._log.warning("%s failed: %s", self.name, exc.message)
            else:
                self._log.error("%s failed", self.name, exc_info=exc)
        elif now - self._last_failure_log >= self._repeat_log_seconds:
            self._last_failure_log = now
            message = exc.message if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            self._log.warning("%s still failing (%d ticks in a row): %s", self.name, self.failing_since, message)

    def _succeeded(self) -> None:
        self.ticks += 1
        if self.failing_since:
            self._log.info("%s recovered after %d failed ticks", self.name, self.failing_since)
            self.failing_since = 0
