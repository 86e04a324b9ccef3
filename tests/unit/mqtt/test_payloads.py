from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.model import OtaJobStatus
from server.mqtt.payloads import (
    REASONS,
    PayloadError,
    parse,
    parse_health,
    parse_ota_status,
    parse_presence,
    parse_status,
)
from server.mqtt.topics import InboundKind


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def reason(fn: Any, payload: bytes, **kw: Any) -> str:
    with pytest.raises(PayloadError) as info:
        fn(payload, **kw)
    return info.value.reason


def test_seed_heartbeat() -> None:
    r = parse_health(b'{"heap":20000,"uptime":120,"fw":"1.0.0"}')
    assert (r.firmware_version, r.heap, r.uptime, r.rssi, r.extra) == ("1.0.0", 20000, 120, None, {})


def test_extras_are_kept_only_when_small_and_scalar() -> None:
    extra: dict[str, Any] = {f"k{i}": i for i in range(20)}
    extra |= {"nested": {"a": 1}, "list": [1], "long": "x" * 100, "nul": None, "bad key": 1}
    r = parse_health(j({"heap": 1, "uptime": 1, "fw": "1.0.0", "rssi": -50, **extra}))
    assert r.rssi == -50
    assert len(r.extra) == 8
    assert all(isinstance(v, int) for v in r.extra.values())


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"x" * 9000, "oversized"),
        (b"{", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'{"heap":NaN}', "malformed_json"),
        (b"[" * 5000, "malformed_json"),
        (b"[]", "not_object"),
        (b'"str"', "not_object"),
        (b'{"heap":1,"uptime":1}', "missing_field"),
        (b'{"heap":true,"uptime":1,"fw":"1"}', "wrong_type"),
        (b'{"heap":1.0,"uptime":1,"fw":"1"}', "wrong_type"),
        (b'{"heap":"1","uptime":1,"fw":"1"}', "wrong_type"),
        (b'{"heap":-1,"uptime":1,"fw":"1"}', "out_of_range"),
        (b'{"heap":1,"uptime":-5,"fw":"1"}', "out_of_range"),
        (b'{"heap":4294967296,"fw":"1"}', "out_of_range"),
        (b'{"uptime":4294967296,"fw":"1"}', "out_of_range"),
        (b'{"heap":1,"uptime":1,"fw":"1","rssi":5}', "out_of_range"),
        (b'{"heap":1,"uptime":1,"fw":"1","rssi":-128}', "out_of_range"),
        (b'{"heap":1,"uptime":1,"fw":"' + b"1" * 33 + b'"}', "out_of_range"),
        (b'{"heap":1,"uptime":1,"fw":"1.0 beta"}', "bad_value"),
        (b'{"heap":1,"uptime":1,"fw":7}', "wrong_type"),
    ],
)
def test_health_rejections(payload: bytes, expected: str) -> None:
    assert reason(parse_health, payload) == expected


def test_the_seeds_heartbeat_without_uptime_is_accepted() -> None:
    r = parse_health(b'{"heap":18000,"fw":"1.0.0"}')
    assert (r.firmware_version, r.heap, r.uptime, r.rssi) == ("1.0.0", 18000, None, None)


def test_max_size_is_configurable() -> None:
    ok = b'{"heap":1,"uptime":1,"fw":"1"}'
    assert reason(parse_health, ok, max_size=10) == "oversized"
    parse_health(ok, max_size=len(ok))


def test_status() -> None:
    assert parse_status(b'{"led":"ON"}').led == "ON"
    r = parse_status(b'{"led":"OFF","commandId":"c-1","relay":true}')
    assert (r.led, r.command_id, r.extra) == ("OFF", "c-1", {"relay": True})
    assert parse_status(b'{"id":"c-2"}').command_id == "c-2"
    assert reason(parse_status, b'{"led":"on"}') == "bad_value"
    assert reason(parse_status, b'{"led":1}') == "wrong_type"


def test_ota_status() -> None:
    r = parse_ota_status(b'{"jobId":"j","status":"SUCCESS","progress":100,"version":"1.2.3"}')
    assert (r.job_id, r.status, r.progress, r.version) == ("j", OtaJobStatus.SUCCESS, 100, "1.2.3")
    r = parse_ota_status(b'{"jobId":"j","status":"FAILED","error":"checksum"}')
    assert (r.status, r.error, r.progress) == (OtaJobStatus.FAILED, "checksum", None)
    assert reason(parse_ota_status, b'{"jobId":"j","status":"DONE"}') == "bad_value"
    assert reason(parse_ota_status, b'{"jobId":"j","status":"STARTED","progress":101}') == "out_of_range"
    assert reason(parse_ota_status, b'{"jobId":"j","status":"STARTED","progress":true}') == "wrong_type"
    assert reason(parse_ota_status, b'{"status":"STARTED"}') == "missing_field"


@pytest.mark.parametrize(
    ("payload", "online"),
    [(b"online", True), (b"offline", False), (b" online\n", True), (b'{"online":false}', False), (b'"online"', True)],
)
def test_presence(payload: bytes, online: bool) -> None:
    assert parse_presence(payload) is online


@pytest.mark.parametrize("payload", [b"ONLINE", b"1", b'{"online":1}', b"{}", b"", b"\xff"])
def test_presence_rejections(payload: bytes) -> None:
    assert reason(parse_presence, payload) in REASONS


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
objects = st.dictionaries(
    st.sampled_from(
        ["heap", "uptime", "fw", "rssi", "led", "id", "jobId", "status", "progress", "error", "version", "online"]
    )
    | st.text(max_size=12),
    json_values,
    max_size=8,
)
payloads = st.one_of(
    st.binary(max_size=300),
    objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(kind=st.sampled_from(list(InboundKind)), payload=payloads)
def test_any_payload_parses_or_raises_payload_error(kind: InboundKind, payload: bytes) -> None:
    try:
        parse(kind, payload)
    except PayloadError as exc:
        assert exc.reason in REASONS


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    heap=st.integers(0, 2**32 - 1),
    uptime=st.integers(0, 2**32 - 1),
    rssi=st.none() | st.integers(-127, 0),
    fw=st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
)
def test_valid_heartbeats_round_trip(heap: int, uptime: int, rssi: int | None, fw: str) -> None:
    r = parse_health(j({"heap": heap, "uptime": uptime, "fw": fw, "rssi": rssi}))
    assert (r.heap, r.uptime, r.rssi, r.firmware_version) == (heap, uptime, rssi, fw)
