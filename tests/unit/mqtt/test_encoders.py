"""What the control plane sends devices is exactly SPEC section 5's JSON, and what the simulated
firmware reads (it is written from the SPEC, not from server/)."""

from __future__ import annotations

import json

import pytest

from server.core.model import LedState, OtaOffer
from server.mqtt.payloads import encode_led_command, encode_ota_offer
from simulator.device import OtaJob

SHA = "0123456789abcdef" * 4
OFFER = OtaOffer("job-1", "1.2.0", "https://fw.example/esp32s3/v1.2.0?sig=x", 1_234_567, SHA, "c2lnbmF0dXJl")


@pytest.mark.parametrize("state", [LedState.ON, LedState.OFF])
def test_an_led_command_is_the_specs_json(state: LedState) -> None:
    data = encode_led_command("c-42", state)
    # SPEC: devices/{id}/command  {"id": <commandId>, "cmd": "led", "state": "ON"}
    assert data == b'{"id":"c-42","cmd":"led","state":"' + state.value.encode() + b'"}'
    assert list(json.loads(data)) == ["id", "cmd", "state"]


def test_an_led_command_is_on_or_off_never_unknown() -> None:
    with pytest.raises(ValueError, match="ON or OFF"):
        encode_led_command("c-1", LedState.UNKNOWN)


def test_an_ota_offer_is_the_specs_json() -> None:
    data = encode_ota_offer(OFFER)
    # SPEC: devices/{id}/ota  {"jobId","version","url","size","sha256","signature"}
    assert json.loads(data) == {
        "jobId": "job-1",
        "version": "1.2.0",
        "url": "https://fw.example/esp32s3/v1.2.0?sig=x",
        "size": 1_234_567,
        "sha256": SHA,
        "signature": "c2lnbmF0dXJl",
    }
    assert list(json.loads(data)) == ["jobId", "version", "url", "size", "sha256", "signature"]
    assert b" " not in data  # compact separators, like every message the bridge sends


def test_the_simulated_firmware_accepts_the_offer_as_sent() -> None:
    job = OtaJob.from_payload(json.loads(encode_ota_offer(OFFER)))
    assert (job.job_id, job.version, job.url, job.size, job.sha256, job.signature) == (
        "job-1",
        "1.2.0",
        OFFER.url,
        OFFER.size,
        SHA,
        OFFER.signature,
    )
