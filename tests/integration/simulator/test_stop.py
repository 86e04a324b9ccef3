"""Stopping a fleet of a few hundred devices: every device says goodbye (the control plane reads
it offline at once, not at the next sweep), nothing is printed to stderr, the report is honest."""

from __future__ import annotations

import logging

import pytest

from simulator.fleet import Fleet, FleetConfig
from tests.integration.simulator.conftest import Stack, new_prefix

FLEET = 300


async def start_fleet(stack: Stack, **kw: object) -> tuple[Fleet, str, list[str]]:
    email, token = await stack.account()
    prefix = new_prefix()
    creds = await stack.bulk_devices(email, prefix, FLEET)
    ids = [c.device_id for c in creds]
    cfg = FleetConfig(devices=FLEET, heartbeat=1.0, ramp=1.0, concurrency=50, seed=3, **kw)  # type: ignore[arg-type]
    fleet = Fleet(cfg, credentials=creds)
    await fleet.start()
    assert await fleet.wait_connected(30)
    devices = await stack.until(token, lambda ds: all(ds.get(i, {}).get("online") for i in ids), within=15)
    assert all(devices[i]["online"] for i in ids)
    return fleet, token, ids


async def offline_after_stop(stack: Stack, token: str, ids: list[str]) -> list[str]:
    # Well inside the sweep's timeout (the heartbeats were 1 s apart; the plane waits longer).
    devices = await stack.until(token, lambda ds: not any(ds[i]["online"] for i in ids), within=5)
    return [i for i in ids if devices[i]["online"]]


async def test_a_stopped_fleet_says_goodbye_cleanly_and_reports_honestly(
    stack: Stack, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.WARNING)
    fleet, token, ids = await start_fleet(stack)
    report = await fleet.stop()
    # The report is taken after the goodbye: nobody is still connected, nothing went wrong.
    assert report.devices == FLEET and report.connected == 0 and report.errors == []
    assert await offline_after_stop(stack, token, ids) == []
    _, err = capfd.readouterr()
    assert "Traceback" not in err
    assert not [r for r in caplog.records if r.name.startswith(("asyncio", "simulator", "aiomqtt"))]


async def test_devices_that_miss_the_goodbye_window_still_go_offline_and_are_named(stack: Stack) -> None:
    fleet, token, ids = await start_fleet(stack)
    # No time at all for the goodbye: each device is cut off the way a power loss would, so the
    # broker publishes its Last Will (`offline`); a clean DISCONNECT here would suppress it.
    report = await fleet.stop(within=0)
    assert report.connected == 0
    assert await offline_after_stop(stack, token, ids) == []
    assert report.errors, "an abandoned goodbye must show in the report"
    named, more = report.errors[:-1], report.errors[-1]
    assert all("goodbye" in e for e in named) and more.startswith("... and ")
