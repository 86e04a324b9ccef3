"""The README's device walk with Mosquitto's own clients, run as written (only the host, the
ports and the device id differ): a heartbeat marks the device online, the LED command reaches
the subscriber as the SPEC's JSON."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.integration.simulator.conftest import Stack, new_prefix


def readme_walk() -> str:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    start = readme.index("mosquitto_pub -h localhost")
    block_start = readme.rindex("```sh\n", 0, start) + len("```sh\n")
    return readme[block_start : readme.index("```", start)]


@pytest.mark.skipif(not (shutil.which("mosquitto_pub") and shutil.which("jq")), reason="needs mosquitto-clients and jq")
async def test_the_readme_mosquitto_walk_runs_as_written(stack: Stack) -> None:
    _, token = await stack.account()
    device = new_prefix().upper()
    rest = stack.base.removeprefix("http://")
    script = (
        readme_walk()
        .replace("localhost:3000", rest)
        .replace("-h localhost -p 1883", f"-h {stack.broker.host} -p {stack.broker.port}")
        .replace("ABC123", device)
    )
    # The walk leaves its subscriber running, as a person would; the test ends it.
    script = f"set -e\n{script}\nsleep 0.5\nkill %1\n"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        env={**os.environ, "TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    text = out.decode()
    assert proc.returncode == 0, text
    command = json.loads(next(line for line in text.splitlines() if '"cmd"' in line and '"acknowledged"' not in line))
    assert command["cmd"] == "led" and command["state"] == "ON" and command["id"], text
    assert '"acknowledged":false' in text.replace(" ", ""), text
    devices = await stack.devices(token)
    assert devices[device]["online"] and devices[device]["firmwareVersion"] == "1.0.0"
