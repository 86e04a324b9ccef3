"""The rollout policy as pure functions: requests, transitions, targeting, counters, the
auto-pause threshold and the completion rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.core.errors import FailedPrecondition, InvalidArgument
from server.core.model import ROLLOUT_TRANSITIONS, Device, LedState, OtaJob, OtaJobStatus, Rollout, RolloutStatus
from server.core.rollout_rules import (
    Counters,
    Decision,
    check_transition,
    count_jobs,
    counters,
    decide,
    failure_ratio_exceeded,
    failure_window,
    min_finished,
    targets,
    validate_request,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROLLOUT = Rollout("r1", "esp32s3", "1.1.0", RolloutStatus.RUNNING, "admin", 2, 0.2, T0, T0)


def device(fw: str = "1.0.0", **kw: object) -> Device:
    base = Device(
        device_id="d1", owner_id="u", name="d1", platform="esp32s3", firmware_version=fw, led=LedState.UNKNOWN,
        online=True, last_seen=None, health=None, blocked=False, broker_username="d1", credential_hash="",
        created_at=T0, updated_at=T0,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def job(status: OtaJobStatus, at: datetime = T0) -> OtaJob:
    return OtaJob("j", "d", "u", "esp32s3", "1.0.0", "1.1.0", status, 0, "", "r1", T0, at)


# ---- requests -------------------------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    r = validate_request(" ESP32S3 ", "", 0, 0.0, "")
    assert (r.platform, r.version, r.batch_size, r.max_failure_ratio, r.from_version) == ("esp32s3", "", 10, 0.2, "")
    r = validate_request("esp32s3", "1.2.0", 1000, 1.0, "1.0.0")
    assert (r.version, r.batch_size, r.max_failure_ratio, r.from_version) == ("1.2.0", 1000, 1.0, "1.0.0")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("nope", "", 0, 0.0, ""), "platform"),
        (("esp32s3", "one", 0, 0.0, ""), "version 'one'"),
        (("esp32s3", "", 0, 0.0, "x.y"), "fromVersion"),
        (("esp32s3", "", 1001, 0.0, ""), "batchSize"),
        (("esp32s3", "", -1, 0.0, ""), "batchSize"),
        (("esp32s3", "", 0, 1.5, ""), "maxFailureRatio"),
        (("esp32s3", "", 0, -0.1, ""), "maxFailureRatio"),
        (("esp32s3", "", 0, float("nan"), ""), "maxFailureRatio"),
        (("esp32s3", "1.1.0", 0, 0.0, "1.1.0"), "fromVersion must differ"),
    ],
)
def test_bad_requests_name_the_field(args: tuple[str, str, int, float, str], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        validate_request(*args)


def test_every_violation_in_one_error() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_request("nope", "x", 5000, 2.0, "")
    assert all(w in caught.value.message for w in ("platform", "version", "batchSize", "maxFailureRatio"))


# ---- transitions ----------------------------------------------------------------------------

LEGAL = {
    (RolloutStatus.RUNNING, RolloutStatus.PAUSED),
    (RolloutStatus.PAUSED, RolloutStatus.RUNNING),
    (RolloutStatus.RUNNING, RolloutStatus.COMPLETED),
    (RolloutStatus.RUNNING, RolloutStatus.ABORTED),
    (RolloutStatus.PAUSED, RolloutStatus.ABORTED),
}


@pytest.mark.parametrize("current", list(RolloutStatus))
@pytest.mark.parametrize("new", list(RolloutStatus))
def test_every_transition(current: RolloutStatus, new: RolloutStatus) -> None:
    rollout = replace(ROLLOUT, status=current)
    if (current, new) in LEGAL:
        check_transition(rollout, new)
        assert new in ROLLOUT_TRANSITIONS[current]
    else:
        with pytest.raises(FailedPrecondition, match=f"rollout r1 is {current.value};"):
            check_transition(rollout, new)
        assert new not in ROLLOUT_TRANSITIONS[current]


def test_terminal_states_go_nowhere() -> None:
    assert ROLLOUT_TRANSITIONS[RolloutStatus.COMPLETED] == frozenset()
    assert ROLLOUT_TRANSITIONS[RolloutStatus.ABORTED] == frozenset()


# ---- targeting ------------------------------------------------------------------------------


def test_targets() -> None:
    assert targets(ROLLOUT, device("1.0.0"))
    assert targets(ROLLOUT, device(""))  # never reported: offered the rollout's version
    assert targets(ROLLOUT, device("1.2.0"))  # a rollout may also move devices back
    assert targets(ROLLOUT, device("1.0.0", online=False))  # offline devices are waited for
    assert not targets(ROLLOUT, device("1.1.0"))
    assert not targets(ROLLOUT, device("v1.1.0"))  # the same version, spelled differently
    assert not targets(ROLLOUT, device("1.0.0", blocked=True))
    assert not targets(ROLLOUT, device("1.0.0", platform="esp32"))
    narrow = replace(ROLLOUT, from_version="1.0.0")
    assert targets(narrow, device("1.0.0")) and not targets(narrow, device("0.9.0"))
    assert not targets(narrow, device(""))


# ---- counters -------------------------------------------------------------------------------


def test_counters_are_jobs_plus_pending() -> None:
    jobs = [job(s) for s in (OtaJobStatus.STARTED, OtaJobStatus.IN_PROGRESS, OtaJobStatus.SUCCESS)]
    jobs += [job(OtaJobStatus.SUCCESS), job(OtaJobStatus.FAILED)]
    assert counters(count_jobs(jobs), 3) == Counters(targeted=8, pending=3, in_progress=2, succeeded=2, failed=1)
    assert counters({}, 0) == Counters()
    assert counters(count_jobs([]), 4) == Counters(targeted=4, pending=4)


# ---- auto-pause ----------------------------------------------------------------------------


def test_min_finished() -> None:
    assert [min_finished(b) for b in (1, 2, 3, 10, 1000)] == [1, 2, 3, 3, 3]


def test_failure_threshold() -> None:
    assert failure_ratio_exceeded(0, 1, 10, 0.2) is None  # too few finished to judge
    assert failure_ratio_exceeded(0, 2, 10, 0.2) is None
    assert failure_ratio_exceeded(0, 3, 10, 0.2) == 1.0
    assert failure_ratio_exceeded(1, 2, 2, 0.5) == pytest.approx(2 / 3)
    assert failure_ratio_exceeded(4, 1, 10, 0.2) is None  # exactly the limit is allowed
    assert failure_ratio_exceeded(3, 1, 10, 0.2) == 0.25
    assert failure_ratio_exceeded(0, 50, 10, 1.0) is None  # 1.0: never pause
    assert failure_ratio_exceeded(0, 1, 1, 0.2) == 1.0  # a batch of one judges after one


def test_the_window_starts_at_the_last_resume() -> None:
    resumed = T0 + timedelta(minutes=5)
    jobs = [job(OtaJobStatus.FAILED, T0), job(OtaJobStatus.FAILED, T0), job(OtaJobStatus.SUCCESS, resumed)]
    jobs += [job(OtaJobStatus.FAILED, resumed + timedelta(seconds=1)), job(OtaJobStatus.IN_PROGRESS, resumed)]
    assert failure_window(jobs, T0) == (1, 3)
    assert failure_window(jobs, resumed) == (1, 1)


# ---- the scheduler's decision ---------------------------------------------------------------


def test_decide_fills_the_batch_with_startable_devices() -> None:
    assert decide(ROLLOUT, in_flight=0, window=(0, 0), unstarted=5, startable=5) == Decision(start=2)
    assert decide(ROLLOUT, in_flight=1, window=(0, 0), unstarted=5, startable=5) == Decision(start=1)
    assert decide(ROLLOUT, in_flight=2, window=(0, 0), unstarted=5, startable=5) == Decision()
    assert decide(ROLLOUT, in_flight=3, window=(0, 0), unstarted=5, startable=5) == Decision()  # another replica
    assert decide(ROLLOUT, in_flight=0, window=(0, 0), unstarted=5, startable=1) == Decision(start=1)


def test_decide_pauses_before_anything_else() -> None:
    decision = decide(ROLLOUT, in_flight=0, window=(0, 2), unstarted=0, startable=0)
    assert decision.pause_ratio == 1.0 and not decision.complete and decision.start == 0
    assert decide(ROLLOUT, in_flight=1, window=(0, 1), unstarted=3, startable=3) == Decision(start=1)


def test_completion_rule() -> None:
    assert decide(ROLLOUT, in_flight=0, window=(4, 0), unstarted=0, startable=0) == Decision(complete=True)
    # Something still in flight: not yet.
    assert decide(ROLLOUT, in_flight=1, window=(3, 0), unstarted=0, startable=0) == Decision()
    # Only offline devices left: it waits for them (stays RUNNING, nothing to start).
    assert decide(ROLLOUT, in_flight=0, window=(3, 0), unstarted=2, startable=0) == Decision()
    # An empty rollout (nobody matches) completes at once.
    assert decide(ROLLOUT, in_flight=0, window=(0, 0), unstarted=0, startable=0) == Decision(complete=True)
