"""The project's Mosquitto config under a burst: what the control plane has not acknowledged
yet is queued for it, not dropped (a fleet going offline at once is 1,000s of Last Wills)."""

from __future__ import annotations

import asyncio
import time

from server.mqtt.provisioning import DynsecBrokerAdmin
from tests.integration.mqtt.conftest import new_id
from tests.support.mosquitto import BrokerUnderTest, DeviceClient, eventually

BURST = 3000  # presence of a 3,000-device fleet stopping at once


async def test_a_burst_the_backend_cannot_ack_yet_is_queued_not_dropped(
    broker: BrokerUnderTest, admin: DynsecBrokerAdmin
) -> None:
    dev = new_id()
    await admin.create_device_client(dev, "pw")
    backend = DeviceClient(broker.host, broker.port, broker.backend_user, broker.backend_password, new_id("cp"))
    device = DeviceClient(broker.host, broker.port, dev, "pw")
    try:
        assert await asyncio.to_thread(backend.connect) is not None
        await backend.subscribe("devices/+/presence", qos=1)
        # The control plane's loop is busy (as it is during such a burst): it reads nothing.
        backend.client.loop_stop()
        assert await asyncio.to_thread(device.connect) is not None
        infos = [device.client.publish(f"devices/{dev}/presence", b"offline", qos=1) for _ in range(BURST)]
        assert await eventually(lambda: all(i.mid in device.pubacks for i in infos), within=20)

        def read_until_all_arrived() -> int:  # the loop is back (its own thread is gone)
            deadline = time.monotonic() + 20
            while len(backend.messages) < BURST and time.monotonic() < deadline:
                backend.client.loop(0.05)  # one packet a call
            return len(backend.messages)

        assert await asyncio.to_thread(read_until_all_arrived) == BURST
    finally:
        device.close()
        backend.close()
