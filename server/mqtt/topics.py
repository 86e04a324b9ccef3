"""The device topic tree (SPEC section 5): parsing what comes in, formatting what goes out."""

from __future__ import annotations

import re
from enum import StrEnum

PREFIX = "devices"
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InboundKind(StrEnum):
    """Device -> control plane; the value is the topic suffix after devices/{id}/."""

    HEALTH = "health"
    STATUS = "status"
    OTA_STATUS = "ota/status"
    PRESENCE = "presence"


class OutboundKind(StrEnum):
    """Control plane -> device."""

    COMMAND = "command"
    OTA = "ota"


_BY_SUFFIX = {k.value: k for k in InboundKind}


def is_valid_device_id(device_id: str) -> bool:
    return DEVICE_ID_RE.fullmatch(device_id) is not None


def parse_inbound(topic: str) -> tuple[str, InboundKind] | None:
    """`devices/{id}/{kind}` -> (id, kind); None for anything else (the bridge drops it)."""
    parts = topic.split("/", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    device_id, suffix = parts[1], parts[2]
    kind = _BY_SUFFIX.get(suffix)
    if kind is None or not is_valid_device_id(device_id):
        return None
    return device_id, kind


def device_topic(device_id: str, kind: InboundKind | OutboundKind) -> str:
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    return f"{PREFIX}/{device_id}/{kind.value}"


def device_filter(device_id: str) -> str:
    """Everything a device may touch: the ACL of its broker role."""
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    return f"{PREFIX}/{device_id}/#"


def subscription_filters(share_group: str | None) -> list[str]:
    """The bridge's subscriptions; shared (`$share/<group>/...`) so replicas split the traffic."""
    filters = [f"{PREFIX}/+/{kind.value}" for kind in InboundKind]
    if share_group:
        if not DEVICE_ID_RE.fullmatch(share_group):
            raise ValueError(f"invalid share group {share_group!r}")
        filters = [f"$share/{share_group}/{f}" for f in filters]
    return filters
