"""The periodic runner behind the sweeps, the rollout scheduler and the heartbeat flush: it
survives a failing tick, keeps its log bounded, honours wake-ups, and stops cleanly."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.core.errors import Unavailable
from server.core.periodic import PeriodicTask

LOGGER = "test.periodic"


async def until(predicate: object, within: float = 2.0) -> bool:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


class Ticks:
    """A tick that records its calls and raises what `errors` holds, one per call."""

    def __init__(self, *errors: Exception | None) -> None:
        self.calls = 0
        self.errors = list(errors)

    async def __call__(self) -> None:
        self.calls += 1
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error


async def test_ticks_repeat_and_stop_ends_them() -> None:
    tick = Ticks()
    task = PeriodicTask("t", tick, 0.01)
    task.start()
    assert await until(lambda: tick.calls >= 3)
    await task.stop()
    calls = tick.calls
    await asyncio.sleep(0.05)
    assert tick.calls == calls and not task.running
    await task.stop()  # twice is fine


async def test_a_failing_tick_is_logged_once_per_run_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    tick = Ticks(RuntimeError("bug"), Unavailable("db down"), Unavailable("db down"), Unavailable("db down"), None)
    task = PeriodicTask(
        "sweep",
        tick,
        0.01,
        logger=logging.getLogger(LOGGER),
        repeat_log_seconds=60,
        clock=lambda: 61.0 if tick.calls >= 4 else 0.0,  # the 4th failure comes a minute after the 1st
    )
    with caplog.at_level(logging.INFO, LOGGER):
        task.start()
        assert await until(lambda: tick.calls >= 6)
        await task.stop()
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines[0] == ("ERROR", "sweep failed", True)  # an unexpected error: with its traceback
    assert lines[1] == ("WARNING", "sweep still failing (4 ticks in a row): db down", False)
    assert lines[2] == ("INFO", "sweep recovered after 4 failed ticks", False)
    assert len(lines) == 3
    assert task.failures == 4 and task.ticks >= 2 and task.failing_since == 0


async def test_a_domain_error_is_logged_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    tick = Ticks(Unavailable("db down"))
    task = PeriodicTask("flush", tick, 0.01, logger=logging.getLogger(LOGGER))
    with caplog.at_level(logging.WARNING, LOGGER):
        task.start()
        assert await until(lambda: tick.calls >= 2)
        await task.stop()
    assert [(r.getMessage(), r.exc_info) for r in caplog.records] == [("flush failed: db down", None)]


async def test_wake_brings_the_next_tick_forward_but_not_after_a_failure() -> None:
    wake = asyncio.Event()
    tick = Ticks()
    task = PeriodicTask("scheduler", tick, 60, wake=wake)
    task.start()
    try:
        assert await until(lambda: tick.calls == 1)  # the first tick runs at start
        wake.set()
        assert await until(lambda: tick.calls == 2)
        tick.errors.append(Unavailable("down"))
        wake.set()
        assert await until(lambda: tick.calls == 3)  # this one fails...
        wake.set()
        await asyncio.sleep(0.05)
        assert tick.calls == 3  # ...so the next waits its full interval, wake or not
    finally:
        await task.stop()


async def test_the_first_tick_can_wait_one_interval() -> None:
    tick = Ticks()
    task = PeriodicTask("ota", tick, 60, first_tick_at_start=False)
    task.start()
    await asyncio.sleep(0.05)
    assert tick.calls == 0
    await task.stop()
    assert tick.calls == 0


async def test_stop_lets_a_tick_in_flight_finish() -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.1)
        finished.set()

    task = PeriodicTask("flush", slow, 60)
    task.start()
    await started.wait()
    await task.stop()
    assert finished.is_set()


async def test_stop_with_a_timeout_cancels_a_hung_tick(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def hung() -> None:
        started.set()
        await asyncio.Event().wait()

    task = PeriodicTask("hung", hung, 60, logger=logging.getLogger(LOGGER))
    task.start()
    await started.wait()
    with caplog.at_level(logging.WARNING, LOGGER):
        await asyncio.wait_for(task.stop(timeout=0.05), 2)
    assert "still running" in caplog.records[-1].getMessage()


async def test_it_can_be_started_again_after_a_stop() -> None:
    tick = Ticks()
    task = PeriodicTask("t", tick, 60)
    await task.stop()  # before start: nothing to do
    task.start()
    assert await until(lambda: tick.calls == 1)
    await task.stop()
    task.start()
    assert await until(lambda: tick.calls == 2)
    await task.stop()


def test_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        PeriodicTask("t", Ticks(), 0)
