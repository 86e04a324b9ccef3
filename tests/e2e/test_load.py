"""The Locust load test runs cleanly against a real stack (in its own venv, as `make load` does)."""

from __future__ import annotations

import csv
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
LOCUST = ROOT / ".venv-load" / "bin" / "locust"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "data") as s:
        yield s


@pytest.mark.slow
def test_locustfile_drives_the_api_without_a_single_failure(stack: Stack, tmp_path: Path) -> None:
    assert LOCUST.exists(), "Locust's venv is missing: run `make load-venv` (make test does)"
    command = [str(LOCUST), "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless", "-u", "4", "-r", "4"]
    command += ["-t", "6s", "--host", stack.rest, "--csv", str(tmp_path / "load"), "--only-summary"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with (tmp_path / "load_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 20
    assert int(total["Failure Count"]) == 0, result.stderr[-3000:]
    # Every user did the whole journey: register, log in, register devices, read the fleet.
    for name in ("/api/auth/register", "/api/auth/login", "/api/device/register", "/api/device?pageSize=50"):
        assert int(rows[name]["Request Count"]) > 0, name
