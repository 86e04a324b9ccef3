"""The pure device model: every OTA path, rollback and anti-rollback, with real test images."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_tools.signing import sign_digest
from firmware_tools.testimage import make_test_image
from simulator.device import DeviceModel, ImageState, OtaError, OtaJob
from simulator.faults import Fault, FaultConfig, FaultDice

KEY = Ed25519PrivateKey.generate()


def image(version: str, secure_version: int = 0) -> bytes:
    return make_test_image("esp32s3", version, size=4096, secure_version=secure_version)


def job_for(data: bytes, version: str, job_id: str = "job-1", key: Ed25519PrivateKey = KEY) -> OtaJob:
    sha = hashlib.sha256(data).hexdigest()
    return OtaJob(job_id, version, "http://fw.test/firmware.bin", len(data), sha, sign_digest(key, sha))


def model(**kw: object) -> DeviceModel:
    return DeviceModel("dev-1", rng=random.Random(1), **kw)  # type: ignore[arg-type]


def update(m: DeviceModel, version: str, secure_version: int = 0) -> OtaJob:
    data = image(version, secure_version)
    job = job_for(data, version)
    m.install(job, m.verify_image(job, data, KEY.public_key()))
    m.reboot()
    return job


def test_fresh_device_runs_ota_0_valid() -> None:
    m = model(initial_version="1.0.0")
    assert m.version == "1.0.0" and m.running_partition.label == "ota_0"
    assert m.partitions[0].state is ImageState.VALID and m.partitions[1].state is ImageState.UNDEFINED
    assert m.health() == {"heap": m.heap, "uptime": 0, "fw": "1.0.0", "rssi": m.rssi}


def test_health_evolves_plausibly() -> None:
    m = model()
    for _ in range(500):
        m.tick(5)
        assert 40 * 1024 <= m.heap <= 320 * 1024 and -95 <= m.rssi <= -30
    assert m.health()["uptime"] == 2500


def test_led() -> None:
    m = model()
    assert m.set_led("ON") == "ON" and m.led == "ON"
    with pytest.raises(ValueError):
        m.set_led("BLUE")


def test_successful_update_boots_pending_verify_then_valid() -> None:
    m = model()
    job = update(m, "1.1.0")
    assert m.version == "1.1.0" and m.running_partition.label == "ota_1"
    assert m.running_partition.state is ImageState.PENDING_VERIFY and m.pending_verify
    assert m.take_outcome() is None  # not decided until the self-check
    m.confirm()
    assert m.partitions[m.running].state is ImageState.VALID  # re-read after confirm()
    outcome = m.take_outcome()
    assert outcome is not None and outcome.outcome == "SUCCESS" and outcome.job == job
    assert m.take_outcome() is None
    # A second update goes back to ota_0, the inactive one.
    update(m, "1.2.0")
    m.confirm()
    assert m.running_partition.label == "ota_0" and m.version == "1.2.0"
    assert m.partitions[1].state is ImageState.VALID and m.partitions[1].version == "1.1.0"


def test_failed_self_check_rolls_back() -> None:
    m = model()
    update(m, "1.1.0")
    m.reject("self-check failed")
    assert m.version == "1.0.0" and m.running_partition.label == "ota_0"
    assert m.partitions[1].state is ImageState.INVALID
    outcome = m.take_outcome()
    assert outcome is not None and outcome.outcome == "FAILED" and "self-check" in str(outcome.error)


def test_crash_before_confirming_aborts_and_rolls_back() -> None:
    m = model()
    update(m, "1.1.0")
    m.reboot()  # crashed while PENDING_VERIFY
    assert m.version == "1.0.0" and m.partitions[1].state is ImageState.ABORTED
    outcome = m.take_outcome()
    assert outcome is not None and outcome.outcome == "FAILED" and "rolled back" in str(outcome.error)
    m.reboot()  # an ordinary reboot later stays on the good image
    assert m.version == "1.0.0"


def test_plain_reboot_keeps_running_image() -> None:
    m = model()
    m.tick(100)
    m.reboot()
    assert m.version == "1.0.0" and m.uptime == 0 and m.boots == 2


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda data, job: (data[:-1], job), "size_mismatch"),
        (lambda data, job: (data[:100] + bytes([data[100] ^ 1]) + data[101:], job), "sha256_mismatch"),
        (lambda data, job: (data, dataclasses.replace(job, signature=None)), "unsigned"),
        (lambda data, job: (data, job_for(data, "1.1.0", key=Ed25519PrivateKey.generate())), "bad_signature"),
        (lambda data, job: (data, dataclasses.replace(job, signature="!!notbase64")), "bad_signature"),
        (lambda data, job: (data, job_for(data, "9.9.9")), "version_mismatch"),
    ],
)
def test_verification_failures_leave_the_device_untouched(mutate: object, code: str) -> None:
    m = model()
    data = image("1.1.0")
    got_data, job = mutate(data, job_for(data, "1.1.0"))  # type: ignore[operator]
    with pytest.raises(OtaError) as err:
        m.verify_image(job, got_data, KEY.public_key())
    assert err.value.code == code
    assert m.partitions[1].state is ImageState.UNDEFINED and m.pending is None


def test_without_a_public_key_signatures_are_not_checked() -> None:
    m = model()
    data = image("1.1.0")
    job = OtaJob("j", "1.1.0", "http://x/f", len(data), hashlib.sha256(data).hexdigest(), None)
    assert m.verify_image(job, data) == 0


def test_a_non_esp_image_is_accepted_on_hash_alone() -> None:
    data = b"\x00not an esp image" * 10
    job = job_for(data, "1.1.0")
    assert model().verify_image(job, data, KEY.public_key()) == 0


def test_a_damaged_esp_image_is_refused_even_with_matching_hash() -> None:
    data = bytearray(image("1.1.0"))
    data[200] ^= 0xFF  # segment data: the image checksum no longer matches
    job = job_for(bytes(data), "1.1.0")
    with pytest.raises(OtaError) as err:
        model().verify_image(job, bytes(data), KEY.public_key())
    assert err.value.code == "bad_image"


def test_anti_rollback_burns_on_confirm_and_refuses_lower_secure_versions() -> None:
    m = model(secure_version=1)
    assert m.efuse_secure_version == 1
    data = image("0.9.0", secure_version=0)
    with pytest.raises(OtaError) as err:
        m.verify_image(job_for(data, "0.9.0"), data, KEY.public_key())
    assert err.value.code == "anti_rollback"
    update(m, "2.0.0", secure_version=3)
    assert m.efuse_secure_version == 1  # not burned until the image confirms itself
    m.confirm()
    assert m.efuse_secure_version == 3
    data = image("2.1.0", secure_version=2)
    with pytest.raises(OtaError):
        m.verify_image(job_for(data, "2.1.0"), data, KEY.public_key())


def test_a_rolled_back_image_never_burns_the_efuse() -> None:
    m = model()
    update(m, "2.0.0", secure_version=5)
    m.reject()
    assert m.efuse_secure_version == 0 and m.version == "1.0.0"


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"jobId": "j", "version": "1", "url": "ftp://x", "size": 1, "sha256": "0" * 64},
        {"jobId": "j", "version": "1", "url": "http://x", "size": 0, "sha256": "0" * 64},
        {"jobId": "j", "version": "1", "url": "http://x", "size": True, "sha256": "0" * 64},
        {"jobId": "j", "version": "1", "url": "http://x", "size": 1, "sha256": "zz"},
        {"version": "1", "url": "http://x", "size": 1, "sha256": "0" * 64},
    ],
)
def test_bad_jobs_are_refused(payload: object) -> None:
    with pytest.raises(OtaError) as err:
        OtaJob.from_payload(payload)
    assert err.value.code == "bad_job"


def test_job_from_payload() -> None:
    job = OtaJob.from_payload(
        {"jobId": "j", "version": "1.1.0", "url": "https://x/f", "size": 10, "sha256": "AB" * 32, "signature": "s"}
    )
    assert job == OtaJob("j", "1.1.0", "https://x/f", 10, "ab" * 32, "s")


def test_fault_dice_are_reproducible_per_seed_and_device() -> None:
    config = FaultConfig(drop_heartbeat=0.3, malformed_payload=0.5)

    def rolls(seed: int, device: str) -> list[bool]:
        dice = FaultDice(config, seed, device)
        return [dice.roll(Fault.DROP_HEARTBEAT) for _ in range(50)]

    assert rolls(7, "a") == rolls(7, "a")
    assert rolls(7, "a") != rolls(8, "a") and rolls(7, "a") != rolls(7, "b")
    dice = FaultDice(config, 1, "x")
    fired = sum(dice.roll(Fault.DROP_HEARTBEAT) for _ in range(1000))
    assert 200 < fired < 400 and dice.injected["drop_heartbeat"] == fired
    assert not any(dice.roll(Fault.OTA_CRASH) for _ in range(100))  # probability 0: never


def test_fault_config_rejects_bad_probabilities() -> None:
    with pytest.raises(ValueError):
        FaultConfig(ota_crash=1.5)
