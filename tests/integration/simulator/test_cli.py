"""`python -m simulator` as QA runs it: a real process against the running stack, JSON report."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.integration.simulator.conftest import PASSWORD, Stack, new_prefix


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_help() -> None:
    code, out, _ = await run_cli("--help")
    assert code == 0 and "--fault-ota-crash" in out and "--register-user" in out and "--seed" in out


async def test_a_short_run_registers_the_user_and_devices_and_reports_json(stack: Stack, tmp_path: Path) -> None:
    email = f"{new_prefix()}@example.com"
    args = ["--api", stack.base, "--email", email, "--password", PASSWORD, "--register-user", "--register"]
    args += ["--devices", "2", "--prefix", new_prefix(), "--duration", "1.5", "--heartbeat", "0.3", "--ramp", "0.1"]
    args += ["--state-file", str(tmp_path / "state.json"), "--seed", "5", "--fault-drop-heartbeat", "0.2", "--json"]
    code, out, err = await run_cli(*args)
    assert code == 0, err
    report = json.loads(out)
    assert report["devices"] == 2 and report["ever_connected"] == 2 and report["heartbeats"] >= 2
    assert report["seed"] == 5 and report["firmware"] == {"1.0.0": 2}
    assert "registered user" in err and "connected 2/2" in err


async def test_bad_login_is_a_clear_error(stack: Stack) -> None:
    code, _, err = await run_cli("--api", stack.base, "--email", "nobody@example.com", "--password", "x" * 12)
    assert code == 1 and "login as nobody@example.com failed" in err and "--register-user" in err
