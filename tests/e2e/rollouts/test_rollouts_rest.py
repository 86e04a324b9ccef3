"""Staged rollouts through the real Envoy with a simulated fleet doing real OTA: batches never
wider than batch_size, completion, pause/resume/abort, auto-pause on a failing fleet, and the
API's refusals (409, 403, 400 naming the state, 404)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from server.core.model import OtaJob
from server.ports.store import OtaJobFilter, PageRequest
from simulator.faults import FaultConfig
from tests.e2e.rollouts.conftest import RolloutStack, counters, stable


async def rollout_jobs(stack: RolloutStack, rollout_id: str) -> list[OtaJob]:
    page = await stack.plane.store.ota_jobs.list(OtaJobFilter(rollout_id=rollout_id), PageRequest(500))
    return page.items


def max_in_flight(jobs: list[OtaJob]) -> int:
    """The most jobs active at once, from each job's start and (for ended ones) end time."""
    ends: dict[str, datetime | None] = {j.job_id: j.updated_at if j.status.terminal else None for j in jobs}
    widest = 0
    for job in jobs:
        t = job.created_at
        active = [j for j in jobs if j.created_at <= t and (ends[j.job_id] is None or t < ends[j.job_id])]  # type: ignore[operator]
        widest = max(widest, len(active))
    return widest


async def create(stack: RolloutStack, **body: Any) -> dict[str, Any]:
    status, answer = await stack.call("POST", "/api/rollouts", {"platform": "esp32s3", **body})
    assert status == 200, answer
    result: dict[str, Any] = answer["rollout"]
    return result


async def test_a_rollout_updates_the_fleet_in_batches_and_completes(stack: RolloutStack) -> None:
    async with stack.fleet(5) as (fleet, owner):
        rollout = await create(stack, batchSize=2)
        assert (rollout["status"], rollout["version"], rollout["batchSize"]) == ("RUNNING", "1.1.0", 2)
        assert rollout["maxFailureRatio"] == pytest.approx(0.2)
        assert counters(rollout)["targeted"] == 5
        rid = rollout["rolloutId"]
        widest: list[int] = []
        done = await stack.until(
            rid,
            lambda r: r["status"] == "COMPLETED",
            within=45,
            each=lambda r: widest.append(counters(r)["inProgress"]),
        )
        assert counters(done) == {"targeted": 5, "pending": 0, "inProgress": 0, "succeeded": 5, "failed": 0}
        assert max(widest) <= 2
        jobs = await rollout_jobs(stack, rid)
        assert len(jobs) == 5 and {j.to_version for j in jobs} == {"1.1.0"}
        assert max_in_flight(jobs) == 2  # batches of two, never wider
        assert all(d.model.version == "1.1.0" for d in fleet.devices.values())

        status, dashboard = await stack.call("GET", "/api/dashboard", token=owner)
        assert status == 200, dashboard
        assert {d["firmwareVersion"] for d in dashboard["devices"]} == {"1.1.0"}
        assert dashboard["totals"]["byOtaStatus"] == {"SUCCESS": 5}

        status, listed = await stack.call("GET", "/api/rollouts?pageSize=10")
        assert status == 200 and [r["rolloutId"] for r in listed["rollouts"]] == [rid]
        status, log = await stack.call("GET", f"/api/admin/activity?target={rid}")
        assert status == 200, log
        assert {"rollout.create", "rollout.complete"} <= {e["action"] for e in log["entries"]}
        # Nothing left to update: a new rollout of the same version targets nobody and completes.
        again = await create(stack)
        assert counters(again)["targeted"] == 0
        await stack.until(again["rolloutId"], lambda r: r["status"] == "COMPLETED", within=5)


async def test_pause_resume_abort_and_refusals(stack: RolloutStack) -> None:
    # Slow downloads (~2 s per job) keep a batch in flight long enough to pause under it.
    async with stack.fleet(6, FaultConfig(slow_download=1.0, slow_download_bps=32 * 1024)) as (_, owner):
        rid = (await create(stack, batchSize=2))["rolloutId"]
        await stack.until(rid, lambda r: counters(r)["inProgress"] == 2, within=10)
        status, paused = await stack.call("POST", f"/api/rollouts/{rid}/pause", {})
        assert status == 200 and paused["rollout"]["status"] == "PAUSED", paused

        # In-flight jobs finish; no new ones start.
        await stack.until(rid, lambda r: counters(r)["inProgress"] == 0, within=15)
        held = await stable(lambda: stack.rollout(rid), 2.5)
        c = counters(held)
        assert c["succeeded"] + c["failed"] in (2, 3) and c["pending"] == 6 - c["succeeded"] - c["failed"]
        assert c["succeeded"] >= 2

        # Refusals while it is paused.
        status, err = await stack.call("POST", f"/api/rollouts/{rid}/pause", {})
        assert status == 400 and "PAUSED" in err["message"], err
        status, err = await stack.call("POST", "/api/rollouts", {"platform": "esp32s3"})
        assert status == 409 and rid in err["message"], err
        for method, path in (("POST", "/api/rollouts"), ("GET", "/api/rollouts"), ("GET", f"/api/rollouts/{rid}")):
            status, err = await stack.call(method, path, {"platform": "esp32s3"} if method == "POST" else None, owner)
            assert status == 403, (path, err)
        status, _ = await stack.call("POST", f"/api/rollouts/{rid}/resume", {}, owner)
        assert status == 403
        assert (await stack.call("GET", "/api/rollouts/nope"))[0] == 404
        status, err = await stack.call("POST", "/api/rollouts", {"platform": "esp32s3", "batchSize": 5000})
        assert status == 400 and "batchSize" in err["message"]

        # Resume: new jobs start again.
        before = c["succeeded"] + c["failed"]
        status, resumed = await stack.call("POST", f"/api/rollouts/{rid}/resume", {})
        assert status == 200 and resumed["rollout"]["status"] == "RUNNING", resumed
        status, err = await stack.call("POST", f"/api/rollouts/{rid}/resume", {})
        assert status == 400 and "RUNNING" in err["message"], err
        await stack.until(rid, lambda r: counters(r)["inProgress"] > 0, within=5)

        # Abort: in-flight jobs run to their end, nothing new starts.
        status, aborted = await stack.call("POST", f"/api/rollouts/{rid}/abort", {})
        assert status == 200 and aborted["rollout"]["status"] == "ABORTED", aborted
        await stack.until(rid, lambda r: counters(r)["inProgress"] == 0, within=15)
        final = counters(await stable(lambda: stack.rollout(rid), 2.5))
        assert before < final["succeeded"] + final["failed"] < 6
        assert final["pending"] == 0  # a finished rollout targets nobody
        for verb in ("pause", "resume", "abort"):
            status, err = await stack.call("POST", f"/api/rollouts/{rid}/{verb}", {})
            assert status == 400 and "ABORTED" in err["message"], (verb, err)
        # The platform is free again.
        status, answer = await stack.call("POST", "/api/rollouts", {"platform": "esp32s3", "batchSize": 1})
        assert status == 200, answer
        await stack.call("POST", f"/api/rollouts/{answer['rollout']['rolloutId']}/abort", {})


@pytest.mark.parametrize(
    ("faults", "error"),
    [(FaultConfig(bad_checksum=1.0), "SHA-256"), (FaultConfig(self_check_fail=1.0), "self-check failed")],
    ids=["bad-checksum", "self-check"],
)
async def test_a_failing_fleet_pauses_the_rollout(stack: RolloutStack, faults: FaultConfig, error: str) -> None:
    async with stack.fleet(5, faults) as (fleet, _):
        rid = (await create(stack, batchSize=2, maxFailureRatio=0.2))["rolloutId"]
        await stack.until(rid, lambda r: r["status"] == "PAUSED", within=20)
        await stack.until(rid, lambda r: counters(r)["inProgress"] == 0, within=15)
        c = counters(await stable(lambda: stack.rollout(rid), 2.0))
        assert c["succeeded"] == 0 and 2 <= c["failed"] <= 3 and c["pending"] == 5 - c["failed"]
        jobs = await rollout_jobs(stack, rid)
        assert all(error in j.error for j in jobs), [j.error for j in jobs]
        assert all(d.model.version == "1.0.0" for d in fleet.devices.values())
        status, log = await stack.call("GET", f"/api/admin/activity?target={rid}&action=rollout.auto_pause")
        assert status == 200 and len(log["entries"]) == 1, log
        assert log["entries"][0]["actor"] == "system" and log["entries"][0]["details"]["ratio"] == "1.00"
        await stack.call("POST", f"/api/rollouts/{rid}/abort", {})
