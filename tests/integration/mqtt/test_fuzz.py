"""Hypothesis-generated traffic through a real broker: the bridge counts it and keeps going."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from server import metrics
from server.mqtt.bridge import MqttBridge
from server.mqtt.provisioning import DynsecBrokerAdmin
from server.mqtt.topics import InboundKind
from tests.integration.mqtt.conftest import RecordingHandler, new_id
from tests.support.mosquitto import BrokerUnderTest, DeviceClient, eventually

KINDS = [k.value for k in InboundKind]


def generated(n: int) -> list[tuple[str, bytes]]:
    """A bounded, reproducible batch of (topic suffix, payload) examples."""
    out: list[tuple[str, bytes]] = []
    junk = st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["heap", "uptime", "fw", "rssi", "led", "jobId", "status", "progress"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40)),
            max_size=5,
        ).map(lambda o: json.dumps(o).encode()),
        st.binary(min_size=9000, max_size=9100),
    )

    @settings(max_examples=n, deadline=None, derandomize=True, database=None)
    @given(st.sampled_from(KINDS), junk)
    def collect(kind: str, payload: bytes) -> None:
        out.append((kind, payload))

    collect()
    return out


def total(name: str) -> float:
    return sum(s.value for metric in metrics.REGISTRY.collect() for s in metric.samples if s.name == name)


async def test_generated_traffic_is_handled_or_dropped_never_fatal(
    broker: BrokerUnderTest,
    admin: DynsecBrokerAdmin,
    bridge: MqttBridge,
    handler: RecordingHandler,
) -> None:
    dev = new_id()
    await admin.create_device_client(dev, "pw")
    d = DeviceClient(broker.host, broker.port, dev, "pw")
    # The backend account can publish anywhere under devices/: the source of bad topics.
    rogue = DeviceClient(broker.host, broker.port, broker.backend_user, broker.backend_password)
    try:
        for c in (d, rogue):
            rc = await asyncio.to_thread(c.connect)
            assert rc is not None and not rc.is_failure
        examples = generated(120)
        received0 = total("mqtt_messages_received_total")
        dropped0 = total("mqtt_messages_dropped_total")
        bad_topic0 = metrics.sample("mqtt_messages_dropped_total", {"reason": "bad_topic"})
        for kind, payload in examples:
            d.client.publish(f"devices/{dev}/{kind}", payload, qos=0)
        bad_topics = ["devices/a.b/health", "devices/" + "x" * 65 + "/status", "devices/a b/presence"]
        for topic in bad_topics:
            rogue.client.publish(topic, b"online", qos=0)
        n = len(examples) + len(bad_topics)

        def handled() -> int:
            return len(handler.health) + len(handler.status) + len(handler.ota) + len(handler.presence)

        assert await eventually(lambda: total("mqtt_messages_received_total") - received0 == n, within=5.0)
        assert await eventually(lambda: handled() + total("mqtt_messages_dropped_total") - dropped0 == n, within=3.0), (
            handled(),
            total("mqtt_messages_dropped_total") - dropped0,
            n,
        )
        assert metrics.sample("mqtt_messages_dropped_total", {"reason": "bad_topic"}) == (bad_topic0 + len(bad_topics))
        assert bridge.is_connected
        before = len(handler.health)
        await d.publish(f"devices/{dev}/health", b'{"heap":1,"uptime":2,"fw":"1.0.0"}')
        assert await eventually(lambda: len(handler.health) == before + 1)
    finally:
        d.close()
        rogue.close()
