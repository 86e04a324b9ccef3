"""The OTA state machine and version rules, as pure functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.core.model import OtaJob, OtaJobStatus
from server.core.ota_rules import (
    IllegalTransition,
    awaiting_confirmation,
    step_for_health,
    step_for_report,
    update_available,
)

S = R = OtaJobStatus  # a device reports the job states themselves
T0 = datetime(2025, 1, 1, tzinfo=UTC)
JOB = OtaJob("j", "d", "u", "esp32s3", "1.0.0", "1.1.0", S.STARTED, 0, "", None, T0, T0)


def test_reports_move_the_job_forward_only() -> None:
    assert step_for_report(JOB, R.STARTED, None, None).status is None  # an acknowledgement
    moving = step_for_report(JOB, R.IN_PROGRESS, 100, None)
    assert (moving.status, moving.progress) == (S.IN_PROGRESS, 99)  # 100 is reserved
    installed = step_for_report(JOB, R.SUCCESS, None, None)
    assert (installed.status, installed.progress) == (S.IN_PROGRESS, 100)
    waiting = replace(JOB, status=S.IN_PROGRESS, progress=100)
    assert awaiting_confirmation(waiting)
    assert step_for_report(waiting, R.SUCCESS, None, None).status is None  # a QoS 1 duplicate
    failed = step_for_report(waiting, R.FAILED, None, None)
    assert (failed.status, failed.error) == (S.FAILED, "the device reported a failure")
    for job, status in [
        (replace(JOB, status=S.IN_PROGRESS, progress=5), R.STARTED),
        (waiting, R.IN_PROGRESS),
        (replace(JOB, status=S.SUCCESS), R.FAILED),
        (replace(JOB, status=S.FAILED), R.SUCCESS),
    ]:
        with pytest.raises(IllegalTransition):
            step_for_report(job, status, None, None)


def test_heartbeats_confirm_or_detect_a_rollback_after_the_reboot() -> None:
    now = T0 + timedelta(seconds=30)
    assert step_for_health(JOB, "1.1.0", 5, now).status is S.SUCCESS  # type: ignore[union-attr]
    assert step_for_health(JOB, "1.0.0", 5, now) is None  # not installed yet
    waiting = replace(JOB, status=S.IN_PROGRESS, progress=100)
    assert step_for_health(waiting, "1.0.0", 600, now) is None  # sent before rebooting
    back = step_for_health(waiting, "1.0.0", 3, now)
    assert back is not None and (back.status, back.error) == (S.FAILED, "device came back with version 1.0.0")
    no_uptime = step_for_health(waiting, "1.0.0", None, now)
    assert no_uptime is not None and no_uptime.status is S.FAILED


@pytest.mark.parametrize(
    ("current", "latest", "blocked", "expected"),
    [
        ("1.0.0", "1.1.0", False, True),
        ("1.1.0", "1.1.0", False, False),
        ("v1.1.0", "1.1.0", False, False),
        ("1.2.0", "1.1.0", False, False),
        ("1.2.0", "1.1.0", True, True),  # a blocked version is moved off, even downwards
        ("", "1.1.0", False, True),
        ("garbage", "1.1.0", False, True),
        ("1.0.0", None, False, False),
        ("1.10.0", "1.9.0", False, False),
    ],
)
def test_update_available(current: str, latest: str | None, blocked: bool, expected: bool) -> None:
    assert update_available(current, latest, blocked) is expected
