"""The wire format of device messages (SPEC section 5): strict validation of what devices
send into the typed values of the broker port, and the JSON encoding of what core sends them.

Devices are untrusted: every payload is size-checked before it is decoded, must be a JSON object
with exactly typed fields (a bool is not an int, a float is not an int), and values must be in
range. Unknown keys are kept as `extra` only when they are few, short and scalar; anything else
is silently left out rather than failing the whole message, so newer firmware that adds a field
still reports. A failure raises PayloadError with a short reason code used as a metric label.

Decoding is bounded before and during `json.loads`, because the standard decoder is not: an
integer literal of more than 4,300 digits makes it raise a plain ValueError (CPython's int
conversion limit), shorter ones still cost quadratic time, and nesting is limited only by the
interpreter's recursion limit. So nesting deeper than MAX_DEPTH is refused up front (as
malformed_json), and number literals longer than any in-range value are never converted: they
decode to a marker that the field checks reject as out of range (and `extra` leaves out).

Outbound, `encode_led_command` and `encode_ota_offer` are the only places that know the JSON
of commands and OTA offers; core hands the bridge typed values.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, NoReturn

from server.core.model import Heartbeat, JsonScalar, LedState, OtaJobStatus, OtaOffer
from server.mqtt.topics import InboundKind
from server.ports.broker import OtaStatusReport, StatusReport

DEFAULT_MAX_PAYLOAD = 8 * 1024
MAX_EXTRA_KEYS = 8
MAX_EXTRA_KEY_LEN = 32
MAX_EXTRA_STR_LEN = 64
MAX_ID_LEN = 64
MAX_ERROR_LEN = 256
# No field nests at all; a little slack keeps a newer firmware's small objects in `extra` legal.
MAX_DEPTH = 8
# int64 has 19 digits; with a sign, 20 characters is the longest literal any field could accept.
MAX_INT_LITERAL = 20
# Longer float literals carry no more precision (a double has 17 significant digits).
MAX_FLOAT_LITERAL = 64
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,31}")
_EXTRA_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_HEAP_MAX = 2**32 - 1  # bytes; more than any ESP32 (even with PSRAM) has; fits the API's uint32
_UPTIME_MAX = 2**32 - 1  # seconds (136 years); fits the API's uint32

REASONS = (
    "oversized",
    "malformed_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "bad_value",
    "bad_topic",
)

Report = Heartbeat | StatusReport | OtaStatusReport | bool


class PayloadError(ValueError):
    """An inbound message that must be dropped; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _fail(reason: str, detail: str = "") -> NoReturn:
    raise PayloadError(reason, detail)


def _reject_constant(name: str) -> NoReturn:
    _fail("malformed_json", f"{name} is not JSON")


class _TooLong:
    """A number literal too long to be in range for any field: never converted, always refused."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<number too long>"


TOO_LONG = _TooLong()


def _int_literal(text: str) -> int | _TooLong:
    return TOO_LONG if len(text) > MAX_INT_LITERAL else int(text)


def _float_literal(text: str) -> float | _TooLong:
    return TOO_LONG if len(text) > MAX_FLOAT_LITERAL else float(text)


# The bytes that decide nesting: escapes (skipped, so an escaped quote can't end a string),
# quotes (toggle "inside a string") and brackets. One linear pass; no backtracking to exploit.
_STRUCTURE_RE = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def _check_depth(payload: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the recursive decoder sees it."""
    depth = 0
    in_string = False
    for match in _STRUCTURE_RE.finditer(payload):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue  # a bracket inside a string, or an escape (only meaningful in strings)
        elif token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                _fail("malformed_json", f"nested deeper than {MAX_DEPTH}")
        else:
            depth -= 1


def _decode(payload: bytes, max_size: int) -> Any:
    """Any JSON value, within the size, depth and number-length bounds."""
    if len(payload) > max_size:
        _fail("oversized", f"{len(payload)} bytes > {max_size}")
    _check_depth(payload)
    try:
        return json.loads(
            payload.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_int=_int_literal,
            parse_float=_float_literal,
        )
    except PayloadError:
        raise
    # ValueError covers JSONDecodeError and UnicodeDecodeError, and whatever else a hostile
    # literal makes the decoder raise; RecursionError is the backstop for the depth check.
    except (ValueError, RecursionError):
        _fail("malformed_json")


def decode_object(payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD) -> dict[str, Any]:
    value = _decode(payload, max_size)
    if not isinstance(value, dict):
        _fail("not_object", type(value).__name__)
    return value


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, *, required: bool) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            _fail("missing_field", key)
        return None
    if value is TOO_LONG:
        _fail("out_of_range", f"{key} has more than {MAX_INT_LITERAL} characters")
    if type(value) is not int:  # bool is a subclass of int; 1.0 is not an int
        _fail("wrong_type", f"{key} must be an integer")
    if not lo <= value <= hi:
        _fail("out_of_range", f"{key}={value} not in {lo}..{hi}")
    return value


def _str(obj: dict[str, Any], key: str, max_len: int, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            _fail("missing_field", key)
        return None
    if type(value) is not str:
        _fail("wrong_type", f"{key} must be a string")
    if not 0 < len(value) <= max_len:
        _fail("out_of_range", f"{key} must be 1..{max_len} characters")
    if not value.isprintable():
        _fail("bad_value", f"{key} has control characters")
    return value


def _version(obj: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = _str(obj, key, 32, required=required)
    if value is not None and not VERSION_RE.fullmatch(value):
        _fail("bad_value", f"{key} is not a version string")
    return value


def _extra(obj: dict[str, Any], known: frozenset[str]) -> dict[str, JsonScalar]:
    extra: dict[str, JsonScalar] = {}
    for key, value in obj.items():
        if key in known or len(extra) >= MAX_EXTRA_KEYS:
            continue
        if len(key) > MAX_EXTRA_KEY_LEN or not _EXTRA_KEY_RE.fullmatch(key):
            continue
        if isinstance(value, bool | int):
            # Out-of-int64 integers would break every store; such values are noise anyway.
            if isinstance(value, bool) or -(2**63) <= value < 2**63:
                extra[key] = value
        elif isinstance(value, float):
            if math.isfinite(value):
                extra[key] = value
        elif isinstance(value, str) and len(value) <= MAX_EXTRA_STR_LEN and value.isprintable():
            extra[key] = value
    return extra


_HEALTH_KEYS = frozenset({"fw", "heap", "uptime", "rssi"})
_STATUS_KEYS = frozenset({"led", "id", "commandId"})
_OTA_KEYS = frozenset({"jobId", "status", "progress", "error", "version"})


def parse_health(
    payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD, *, device_id: str = "", at: datetime | None = None
) -> Heartbeat:
    """`device_id` is the topic's; `at` defaults to now (the bridge stamps it again as it hands
    the heartbeat to core)."""
    obj = decode_object(payload, max_size)
    fw = _version(obj, "fw", required=True)
    # The seed's own example heartbeat is {"heap":18000,"fw":"1.0.0"}: heap and uptime are optional.
    heap = _int(obj, "heap", 0, _HEAP_MAX, required=False)
    uptime = _int(obj, "uptime", 0, _UPTIME_MAX, required=False)
    rssi = _int(obj, "rssi", -127, 0, required=False)
    assert fw is not None
    return Heartbeat(device_id, at or datetime.now(UTC), fw, heap, uptime, rssi, _extra(obj, _HEALTH_KEYS))


def parse_status(payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD) -> StatusReport:
    obj = decode_object(payload, max_size)
    led_raw = _str(obj, "led", 3, required=False)
    led: LedState | None = None
    if led_raw is not None:
        if led_raw == "ON":
            led = LedState.ON
        elif led_raw == "OFF":
            led = LedState.OFF
        else:
            _fail("bad_value", "led must be ON or OFF")
    # Devices echo the command's "id"; "commandId" is accepted as the camelCase spelling.
    command_id = _str(obj, "commandId", MAX_ID_LEN, required=False)
    if command_id is None:
        command_id = _str(obj, "id", MAX_ID_LEN, required=False)
    return StatusReport(led, command_id, _extra(obj, _STATUS_KEYS))


def parse_ota_status(payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD) -> OtaStatusReport:
    obj = decode_object(payload, max_size)
    job_id = _str(obj, "jobId", MAX_ID_LEN, required=True)
    status_raw = _str(obj, "status", 16, required=True)
    try:
        status = OtaJobStatus(str(status_raw))
    except ValueError:
        _fail("bad_value", "status must be STARTED, IN_PROGRESS, SUCCESS or FAILED")
    progress = _int(obj, "progress", 0, 100, required=False)
    error = _str(obj, "error", MAX_ERROR_LEN, required=False)
    version = _version(obj, "version", required=False)
    assert job_id is not None
    return OtaStatusReport(job_id, status, progress, error, version)


def parse_presence(payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD) -> bool:
    """`online`/`offline` as plain text (the seed's firmware and its Last Will), or JSON."""
    if len(payload) > max_size:
        _fail("oversized", f"{len(payload)} bytes > {max_size}")
    text = payload.strip()
    if text in (b"online", b"offline"):
        return text == b"online"
    value = _decode(text, max_size)
    if isinstance(value, str) and value in ("online", "offline"):
        return value == "online"
    if not isinstance(value, dict):
        _fail("not_object", type(value).__name__)
    online = value.get("online")
    if online is None:
        _fail("missing_field", "online")
    if type(online) is not bool:
        _fail("wrong_type", "online must be a boolean")
    return online


def parse(kind: InboundKind, payload: bytes, max_size: int = DEFAULT_MAX_PAYLOAD, *, device_id: str = "") -> Report:
    """`device_id` goes into a heartbeat; the other kinds don't carry it."""
    match kind:
        case InboundKind.HEALTH:
            return parse_health(payload, max_size, device_id=device_id)
        case InboundKind.STATUS:
            return parse_status(payload, max_size)
        case InboundKind.OTA_STATUS:
            return parse_ota_status(payload, max_size)
        case InboundKind.PRESENCE:
            return parse_presence(payload, max_size)


# ---- outbound ------------------------------------------------------------------------------


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def encode_led_command(command_id: str, state: LedState) -> bytes:
    """devices/{id}/command: `{"id","cmd":"led","state"}`; the device echoes `id` on its status."""
    if state not in (LedState.ON, LedState.OFF):
        raise ValueError(f"an LED command is ON or OFF, not {state}")
    return _encode({"id": command_id, "cmd": "led", "state": state.value})


def encode_ota_offer(offer: OtaOffer) -> bytes:
    """devices/{id}/ota: `{"jobId","version","url","size","sha256","signature"}`."""
    return _encode(
        {
            "jobId": offer.job_id,
            "version": offer.version,
            "url": offer.url,
            "size": offer.size,
            "sha256": offer.sha256,
            "signature": offer.signature,
        }
    )
