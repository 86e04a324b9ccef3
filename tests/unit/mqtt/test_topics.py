from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.mqtt.connection import parse_url
from server.mqtt.ratelimit import RateLimitedLogger
from server.mqtt.topics import (
    InboundKind,
    OutboundKind,
    device_filter,
    device_topic,
    parse_inbound,
    subscription_filters,
)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("devices/esp-01/health", ("esp-01", InboundKind.HEALTH)),
        ("devices/A_b-9/status", ("A_b-9", InboundKind.STATUS)),
        ("devices/x/ota/status", ("x", InboundKind.OTA_STATUS)),
        ("devices/x/presence", ("x", InboundKind.PRESENCE)),
        ("devices/x/command", None),
        ("devices/x/ota", None),
        ("devices//health", None),
        ("devices/a b/health", None),
        ("devices/a.b/health", None),
        ("devices/" + "x" * 65 + "/health", None),
        ("devices/x/health/extra", None),
        ("device/x/health", None),
        ("", None),
    ],
)
def test_parse_inbound(topic: str, expected: object) -> None:
    assert parse_inbound(topic) == expected


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=100))
def test_parse_inbound_never_raises(topic: str) -> None:
    parsed = parse_inbound(topic)
    if parsed is not None:
        assert device_topic(*parsed) == topic


def test_format() -> None:
    assert device_topic("d1", OutboundKind.COMMAND) == "devices/d1/command"
    assert device_topic("d1", OutboundKind.OTA) == "devices/d1/ota"
    assert device_filter("d1") == "devices/d1/#"
    with pytest.raises(ValueError, match="invalid device id"):
        device_topic("a/#", OutboundKind.COMMAND)


def test_subscriptions_are_shared() -> None:
    assert subscription_filters("g") == [
        "$share/g/devices/+/health",
        "$share/g/devices/+/status",
        "$share/g/devices/+/ota/status",
        "$share/g/devices/+/presence",
    ]
    assert subscription_filters(None)[0] == "devices/+/health"


def test_parse_url() -> None:
    e = parse_url("mqtt://h:1884")
    assert (e.host, e.port, e.transport, e.tls) == ("h", 1884, "tcp", False)
    e = parse_url("mqtts://h")
    assert (e.port, e.tls) == (8883, True)
    e = parse_url("ws://u:p%40@h:9001")
    assert (e.transport, e.port, e.ws_path, e.username, e.password) == (
        "websockets",
        9001,
        "/mqtt",
        "u",
        "p@",
    )
    e = parse_url("wss://h/custom")
    assert (e.port, e.tls, e.ws_path) == (443, True, "/custom")
    with pytest.raises(ValueError, match="unsupported"):
        parse_url("http://h")


def test_rate_limited_logger(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rl = RateLimitedLogger(logging.getLogger("t"), per_window=2, window=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        assert [rl.log(logging.WARNING, "k", "m%d", i) for i in range(5)] == [True, True, False, False, False]
        assert rl.log(logging.WARNING, "other", "o")
        now[0] = 61.0
        assert rl.log(logging.WARNING, "k", "again")
    text = caplog.text
    assert "3 more 'k' messages suppressed" in text
    assert text.count("m") >= 2
