"""The Mosquitto launcher's backend set-up against a live broker: it repairs what is wrong and
leaves a connected control plane alone (tools/mosquitto.py, run by every broker (re)start)."""

from __future__ import annotations

import asyncio

from server.mqtt import dynsec
from tests.integration.mqtt.conftest import new_id
from tests.support.mosquitto import BrokerUnderTest, DeviceClient
from tools.mosquitto import can_log_in, dynsec_commands, ensure_backend


def ensure(broker: BrokerUnderTest) -> None:
    ensure_backend(
        broker.host,
        broker.port,
        admin_user=broker.admin_user,
        admin_pw=broker.admin_password,
        backend_user=broker.backend_user,
        backend_pw=broker.backend_password,
    )


async def test_the_set_up_does_not_disconnect_a_connected_control_plane(own_broker: BrokerUnderTest) -> None:
    # After a broker restart the control plane may reconnect before the launcher's set-up runs;
    # being kicked then lost the device messages of the next second (test_watch_and_metrics'
    # broker-restart test failed that way under load).
    backend = DeviceClient(own_broker.host, own_broker.port, own_broker.backend_user, own_broker.backend_password)
    try:
        rc = await asyncio.to_thread(backend.connect)
        assert rc is not None and not rc.is_failure
        await asyncio.to_thread(ensure, own_broker)
        assert not await asyncio.to_thread(backend.disconnected.wait, 1.0)
    finally:
        backend.close()


async def test_the_set_up_still_repairs_a_changed_backend_password(own_broker: BrokerUnderTest) -> None:
    b = own_broker
    changed = dynsec.set_password(b.backend_user, "someone-else-s-" + new_id())
    await asyncio.to_thread(
        dynsec_commands, b.host, b.port, username=b.admin_user, password=b.admin_password, commands=[changed]
    )
    assert not await asyncio.to_thread(can_log_in, b.host, b.port, b.backend_user, b.backend_password)
    await asyncio.to_thread(ensure, b)
    assert await asyncio.to_thread(can_log_in, b.host, b.port, b.backend_user, b.backend_password)
