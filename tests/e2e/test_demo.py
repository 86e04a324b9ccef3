"""`make demo` as a user runs it: the scripted walk through the whole product exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.net import free_port


@pytest.mark.slow
def test_demo_walks_through_the_product_and_exits_0() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "MONGO_", "S3_", "DATA_DIR"))}
    env.update({name: str(free_port()) for name in ("PORT", "GRPC_PORT", "MQTT_PORT", "FIRMWARE_HTTP_PORT")})
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo"], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("[demo]")]
    assert result.returncode == 0, "\n".join(lines) + result.stderr[-3000:]
    said = "\n".join(lines)
    for expected in (
        "3 online",
        "acknowledged by the device",
        "OTA: SUCCESS",
        "now runs 1.1.0",
        "'1.1.0': 1",
        "rollout: COMPLETED, 2 succeeded",
        "'1.1.0': 3",
        "LED now refused",
        "done: every step behaved as documented",
    ):
        assert expected in said, said
