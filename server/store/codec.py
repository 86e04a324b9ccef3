"""Value encoding shared by both adapters: exact times, JSON blobs, opaque page tokens.

Times are stored as integer epoch microseconds on both adapters: exact (BSON dates keep only
milliseconds), totally ordered, and cheap to index and compare in a conditional update.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from server.core.errors import InvalidArgument
from server.core.model import JsonScalar

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    if dt.utcoffset() is None:
        # A naive time is a bug in the caller; storing it would silently shift it.
        raise InvalidArgument("times must be timezone-aware")
    return (dt - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def opt_to_us(dt: datetime | None) -> int | None:
    return None if dt is None else to_us(dt)


def opt_from_us(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def dump_json(value: Any) -> str:
    # Device-supplied keys may hold '.' or '$' (which MongoDB field names treat specially),
    # so free-form maps are stored as one JSON string on both adapters.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def load_extra(text: str) -> dict[str, JsonScalar]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def load_details(text: str) -> dict[str, str]:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def encode_token(kind: str, sort_key: int, item_id: str) -> str:
    raw = dump_json([kind, sort_key, item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str) -> tuple[int, str]:
    """The keyset position (sort key, id) after which the next page starts."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgument("malformed page token") from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or value[0] != kind
        or type(value[1]) is not int
        or not isinstance(value[2], str)
    ):
        raise InvalidArgument("malformed page token")
    return value[1], value[2]
