"""Hostile payloads against the parser: huge numbers, deep nesting, every JSON type in every field.

The payloads are built as JSON *text*, not with json.dumps, so they include what a device can
send but Python would never produce: integer literals past CPython's 4,300-digit conversion
limit (the heartbeat that used to end all ingest), float literals thousands of characters long,
nesting past the recursion limit. Whatever comes in, the parser returns a typed report or raises
PayloadError with a known reason: never any other exception.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.model import Heartbeat
from server.mqtt.payloads import DEFAULT_MAX_PAYLOAD, MAX_DEPTH, REASONS, PayloadError, parse, parse_health
from server.mqtt.topics import InboundKind
from server.ports.broker import OtaStatusReport, StatusReport

FIELDS = ["heap", "uptime", "fw", "rssi", "led", "id", "commandId", "jobId", "status", "progress", "error"]
FIELDS += ["version", "online", "extra_1"]
# A valid message of each kind, so that replacing one field tests that field's checks alone.
VALID: dict[InboundKind, dict[str, str]] = {
    InboundKind.HEALTH: {"fw": '"1.0.0"', "heap": "20000", "uptime": "120", "rssi": "-60"},
    InboundKind.STATUS: {"led": '"ON"', "id": '"c-1"'},
    InboundKind.OTA_STATUS: {"jobId": '"j-1"', "status": '"IN_PROGRESS"', "progress": "50"},
    InboundKind.PRESENCE: {"online": "true"},
}
EXPECTED_TYPE: dict[InboundKind, type] = {
    InboundKind.HEALTH: Heartbeat,
    InboundKind.STATUS: StatusReport,
    InboundKind.OTA_STATUS: OtaStatusReport,
    InboundKind.PRESENCE: bool,
}


def huge_int(digits: int, sign: str = "") -> str:
    return sign + "9" * digits


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def nested_objects(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


# One of every JSON type, and the hostile shapes of each.
EVERY_TYPE = {
    "null": "null",
    "true": "true",
    "false": "false",
    "zero": "0",
    "negative": "-1",
    "int64_max": str(2**63 - 1),
    "past_int64": str(2**64),
    "int_4301_digits": huge_int(4301),
    "negative_4301_digits": huge_int(4301, "-"),
    "int_7000_digits": huge_int(7000),
    "float": "1.5",
    "float_exponent_overflow": "1e999999",
    "float_3000_digits": "0." + "1" * 3000,
    "string": '"x"',
    "empty_string": '""',
    "control_chars": '"a\\u0000b"',
    "lone_surrogate": '"\\ud800"',
    "empty_array": "[]",
    "array": "[1,2]",
    "empty_object": "{}",
    "object": '{"a":1}',
    "deep_array": nested(5000),
    "deep_object": nested_objects(3000),
    "nested_at_limit": nested(MAX_DEPTH - 1),
}


def payload_of(fields: dict[str, str]) -> bytes:
    return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}").encode()


def check(kind: InboundKind, payload: bytes) -> Any:
    """The property: a report of the kind's type, or a PayloadError with a known reason."""
    try:
        report = parse(kind, payload)
    except PayloadError as exc:
        assert exc.reason in REASONS, exc.reason
        return exc
    assert isinstance(report, EXPECTED_TYPE[kind]), report
    if isinstance(report, Heartbeat):
        for value in (report.heap, report.uptime):
            assert value is None or 0 <= value < 2**32
        for extra in report.extra.values():
            assert extra is None or isinstance(extra, bool | int | float | str)
    return report


def test_the_heartbeat_that_stopped_ingest_is_refused_as_out_of_range() -> None:
    with pytest.raises(PayloadError) as info:
        parse_health(b'{"fw":"1.0.0","heap":' + huge_int(4301).encode() + b"}")
    assert info.value.reason == "out_of_range"


def test_a_huge_unknown_field_is_left_out_not_fatal() -> None:
    report = parse_health(b'{"fw":"1.0.0","heap":1,"big":' + huge_int(4301).encode() + b',"ok":2}')
    assert report.extra == {"ok": 2}


def test_nesting_past_the_limit_is_refused_before_decoding() -> None:
    for text in (nested(MAX_DEPTH + 1), nested_objects(MAX_DEPTH + 1)):
        with pytest.raises(PayloadError) as info:
            parse_health(payload_of({"fw": '"1.0.0"', "x": text}))
        assert info.value.reason == "malformed_json"
    # Brackets inside strings are text, not nesting.
    assert parse_health(payload_of({"fw": '"1.0.0"', "note": json.dumps("[" * 50 + '\\"{')})).heap is None


@pytest.mark.parametrize("kind", list(InboundKind))
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", list(EVERY_TYPE.values()), ids=list(EVERY_TYPE))
def test_every_json_type_in_every_field(kind: InboundKind, field: str, value: str) -> None:
    check(kind, payload_of({**VALID[kind], field: value}))


@pytest.mark.parametrize("kind", list(InboundKind))
@pytest.mark.parametrize("value", list(EVERY_TYPE.values()), ids=list(EVERY_TYPE))
def test_every_json_type_as_the_whole_message(kind: InboundKind, value: str) -> None:
    result = check(kind, value.encode())
    if not value.startswith("{"):  # only an object is a message (presence: or "online"/"offline")
        assert isinstance(result, PayloadError)


# ---- generated ------------------------------------------------------------------------------

int_literals = st.one_of(
    st.integers().map(str),
    st.builds(huge_int, st.integers(1, 7000), st.sampled_from(["", "-"])),
)
float_literals = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(
        lambda whole, frac, exp: f"{whole}.{frac}e{exp}",
        st.integers(1, 2000).map(lambda n: "7" * n),
        st.integers(1, 2000).map(lambda n: "3" * n),
        st.integers(-(10**6), 10**6),
    ),
)
scalar_text = st.one_of(
    st.sampled_from(["null", "true", "false"]),
    int_literals,
    float_literals,
    st.text(max_size=40).map(json.dumps),
    st.sampled_from(['"ON"', '"OFF"', '"online"', '"SUCCESS"', '"1.0.0"']),
)
deep_text = st.builds(
    lambda depth, objects: nested_objects(depth) if objects else nested(depth),
    st.integers(1, 4000),
    st.booleans(),
)


def arrays(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(children, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")


def objects(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    keys = st.sampled_from(FIELDS) | st.text(max_size=8)
    return st.dictionaries(keys, children, max_size=3).map(lambda d: payload_of(d).decode())


value_text = st.recursive(scalar_text | deep_text, lambda c: arrays(c) | objects(c), max_leaves=8)
messages = st.one_of(
    # Every field present with any value: starts from a valid message, so deep checks are reached.
    st.builds(
        lambda kind, changes: (kind, payload_of({**VALID[kind], **changes})),
        st.sampled_from(list(InboundKind)),
        st.dictionaries(st.sampled_from(FIELDS), value_text, max_size=5),
    ),
    st.tuples(st.sampled_from(list(InboundKind)), value_text.map(str.encode)),
    st.tuples(st.sampled_from(list(InboundKind)), st.binary(max_size=200)),
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(messages)
def test_any_hostile_message_parses_or_is_a_counted_drop(message: tuple[InboundKind, bytes]) -> None:
    kind, payload = message
    result = check(kind, payload)
    if len(payload) > DEFAULT_MAX_PAYLOAD:
        assert isinstance(result, PayloadError) and result.reason == "oversized"
