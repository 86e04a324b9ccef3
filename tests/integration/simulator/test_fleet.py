"""A simulated fleet against the real control plane: REST provisioning, presence, LED, faults."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

from simulator.api import RestApi
from simulator.faults import FaultConfig
from simulator.fleet import Fleet, FleetConfig, FleetError
from simulator.mqtt_device import SimulatedDevice
from tests.integration.simulator.conftest import PASSWORD, Stack, new_prefix
from tests.support.mosquitto import eventually


def config(stack: Stack, email: str, state: Path, **kw: object) -> FleetConfig:
    base: dict[str, object] = {
        "api": stack.base,
        "email": email,
        "password": PASSWORD,
        "register": True,
        "devices": 3,
        "prefix": new_prefix(),
        "heartbeat": 0.5,
        "ramp": 0.2,
        "seed": 1,
        "state_file": state,
    }
    return FleetConfig(**(base | kw))  # type: ignore[arg-type]


async def test_fleet_registers_shows_online_answers_led_and_reuses_credentials(stack: Stack, tmp_path: Path) -> None:
    email = f"{new_prefix()}@example.com"
    state = tmp_path / "state.json"
    cfg = config(stack, email, state, register_user=True, firmware="1.4.2")
    fleet = Fleet(cfg)
    await fleet.start()
    try:
        assert await fleet.wait_connected(10)
        token = await asyncio.to_thread(RestApi(stack.base).login, email, PASSWORD)
        ids = set(cfg.device_ids())
        devices = await stack.until(
            token, lambda ds: all(ds.get(i, {}).get("firmwareVersion") == "1.4.2" and ds[i]["online"] for i in ids)
        )
        assert set(devices) == ids and all(d["online"] and d["health"]["heap"] > 0 for d in devices.values())

        target = sorted(ids)[0]
        status, reply = await stack.call("POST", f"/api/device/{target}/led", token, {"state": "ON"})
        assert status == 200 and reply["acknowledged"] is True, reply
        assert fleet.devices[target].model.led == "ON"
        await stack.until(token, lambda ds: ds[target].get("led") == "ON")
    finally:
        report = await fleet.stop()
    assert report.devices == 3 and report.ever_connected == 3 and report.heartbeats >= 3
    assert report.commands_received == 1 and report.commands_acknowledged == 1
    assert report.firmware == {"1.4.2": 3} and report.faults == {}
    # A clean stop says goodbye: every device shows offline.
    await stack.until(token, lambda ds: not any(ds[i]["online"] for i in ids))
    assert not any(d["online"] for d in (await stack.devices(token)).values())

    stored = json.loads(state.read_text())["apis"][stack.base]
    assert set(stored) == ids and state.stat().st_mode & 0o777 == 0o600
    # A re-run reuses the stored passwords; one lost from the file is rotated (the device exists: 409).
    lost = sorted(ids)[1]
    del stored[lost]
    state.write_text(json.dumps({"version": 1, "apis": {stack.base: stored}}))
    again = Fleet(cfg)
    await again.start()
    try:
        assert await again.wait_connected(10)
    finally:
        await again.stop()
    reread = json.loads(state.read_text())["apis"][stack.base]
    assert set(reread) == ids and all(reread[i] == stored[i] for i in stored)


async def test_unclean_disconnect_fires_the_last_will(stack: Stack, tmp_path: Path) -> None:
    email, token = await stack.account()
    fleet = Fleet(config(stack, email, tmp_path / "s.json", devices=1, outage=30.0))
    await fleet.start()
    try:
        assert await fleet.wait_connected(10)
        (device_id, device), *_ = fleet.devices.items()
        await stack.until(token, lambda ds: ds[device_id]["online"])
        device.drop_connection()
        devices = await stack.until(token, lambda ds: not ds[device_id]["online"], within=5)
        assert devices[device_id]["online"] is False  # the broker published the will: offline
        assert not device.connected.is_set()
    finally:
        report = await fleet.stop(within=2)
    assert report.faults == {"unclean_disconnect": 1}


async def test_malformed_payload_faults_are_dropped_and_counted_by_the_control_plane(
    stack: Stack, tmp_path: Path
) -> None:
    email, token = await stack.account()
    before = await asyncio.to_thread(stack.dropped_total)
    faults = FaultConfig(malformed_payload=1.0, drop_heartbeat=0.5)
    fleet = Fleet(config(stack, email, tmp_path / "s.json", devices=2, heartbeat=0.2, faults=faults, seed=42))
    await fleet.start()
    try:
        assert await fleet.wait_connected(10)
        # Run until the dice have done both kinds of harm and a valid heartbeat got through
        # (device ids, hence the seeded dice, differ per run: wait for it rather than a fixed time).
        sims = list(fleet.devices.values())
        assert await eventually(
            lambda: (
                sum(d.stats.malformed_sent for d in sims) >= 2
                and any(d.faults.injected["drop_heartbeat"] for d in sims)
                and any(d.stats.heartbeats for d in sims)
            ),
            within=10,
        )
    finally:
        report = await fleet.stop()
    assert report.malformed_sent >= 2 and report.faults["malformed_payload"] == report.malformed_sent
    assert report.faults.get("drop_heartbeat", 0) > 0
    for _ in range(100):  # the bridge counts them within a few event-loop turns
        if await asyncio.to_thread(stack.dropped_total) - before >= report.malformed_sent:
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(stack.dropped_total) - before >= report.malformed_sent
    # The devices whose valid heartbeats got through (the dice drop half of them) still look
    # healthy to the control plane, malformed traffic notwithstanding.
    reporting = {d for d, sim in fleet.devices.items() if sim.stats.heartbeats > 0}
    assert reporting

    def healthy(devices: dict[str, dict[str, str]]) -> bool:
        return all(devices[d]["firmwareVersion"] == "1.0.0" for d in reporting)

    for _ in range(100):
        devices = await stack.devices(token)
        if healthy(devices):
            break
        await asyncio.sleep(0.1)
    assert healthy(devices), devices


async def test_reconnect_storm_reconnects_and_comes_back(stack: Stack, tmp_path: Path) -> None:
    email, _ = await stack.account()
    faults = FaultConfig(reconnect_storm=1.0, storm_reconnects=3)
    fleet = Fleet(config(stack, email, tmp_path / "s.json", devices=1, faults=faults))
    await fleet.start()
    device: SimulatedDevice = next(iter(fleet.devices.values()))
    try:
        await eventually(lambda: device.stats.connects >= 4, within=5)
    finally:
        report = await fleet.stop()
    assert report.reconnects >= 3 and report.faults["reconnect_storm"] >= 1


async def test_a_username_the_server_refuses_names_the_username_flag(stack: Stack, tmp_path: Path) -> None:
    # The README's command once derived "qa" from qa@example.com, which the server refuses.
    email = "qa@example.com"
    fleet = Fleet(config(stack, email, tmp_path / "s.json", register_user=True))
    try:
        await asyncio.to_thread(fleet.provision)
    except FleetError as exc:
        assert "--username" in str(exc)
    else:
        raise AssertionError("a refused username must fail provisioning")


async def test_the_readme_simulator_command_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "python -m simulator --api" in ln).strip("`")
    args = shlex.split(line)[3:]  # drop "python -m simulator"
    # Same flags as written; only the host, the placeholder password and a short run differ.
    args[args.index("--api") + 1] = stack.base
    args[args.index("--password") + 1] = PASSWORD
    args[args.index("--email") + 1] = f"{new_prefix()}@example.com"
    args[args.index("--username") + 1] = new_prefix()
    args[args.index("--duration") + 1] = "8"  # the default ramp spreads connects over 5 s
    args[args.index("--devices") + 1] = "2"
    args += ["--state-file", str(tmp_path / "state.json"), "--prefix", new_prefix()]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, out.decode()
