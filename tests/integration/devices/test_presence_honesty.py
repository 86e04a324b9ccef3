"""Issue 10 item 16: presence is never vouched for while the control plane cannot see the broker.

The real broker is stopped and restarted under a running plane. While it is down every device
reads online=false with presenceKnown=false; after it is back, a device that never returned
stays unknown (never online) until the offline sweep settles it, and one that reconnects is
re-learned from what it sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from iot.v1 import dashboard_pb2, device_pb2
from server.app import ControlPlane
from tests.integration.devices.conftest import HEALTH, OFFLINE_AFTER, Fleet, plane_settings
from tests.support.mosquitto import BrokerUnderTest, mosquitto_broker
from tests.support.servers import running_plane


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerUnderTest]:
    with mosquitto_broker(tmp_path / "mosquitto") as b:
        yield b


async def test_presence_is_unknown_while_the_broker_is_down_and_relearned_after(
    own_broker: BrokerUnderTest, tmp_path: Path
) -> None:
    settings = plane_settings(tmp_path / "plane", own_broker, METRICS_PORT="0")
    async with (
        running_plane(ControlPlane(settings)) as plane,
        grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel,
    ):
        fleet = Fleet(plane, own_broker, channel)
        try:
            alice = await fleet.user()
            gone, back = (await alice.register()).mqtt, (await alice.register()).mqtt
            devices = {}
            for creds in (gone, back):
                devices[creds.username] = d = await fleet.device(creds.username, creds.password)
                await d.publish(f"devices/{creds.username}/health", HEALTH)
                shown = await alice.eventually_device(creds.username, lambda x: x.online)
                assert shown.online and shown.presence_known

            own_broker.stop()
            for creds in (gone, back):
                shown = await alice.eventually_device(creds.username, lambda x: not x.presence_known)
                assert not shown.online and not shown.presence_known
            listed = await alice.devices.ListDevices(device_pb2.ListDevicesRequest(), metadata=alice.md)
            assert [(d.online, d.presence_known) for d in listed.devices] == [(False, False)] * 2
            online_only = await alice.devices.ListDevices(device_pb2.ListDevicesRequest(online=True), metadata=alice.md)
            assert list(online_only.devices) == []
            offline = await alice.devices.ListDevices(device_pb2.ListDevicesRequest(online=False), metadata=alice.md)
            assert len(offline.devices) == 2
            totals = (await alice.dashboard.GetDashboard(dashboard_pb2.GetDashboardRequest(), metadata=alice.md)).totals
            assert (totals.devices, totals.online, totals.offline, totals.presence_known) == (2, 0, 2, False)

            # One device disappears for good while the broker is down; the broker comes back.
            await asyncio.to_thread(devices[gone.username].close)
            fleet.clients.remove(devices[gone.username])
            await asyncio.to_thread(devices[back.username].close)
            own_broker.start()
            assert plane.bridge is not None and await plane.bridge.wait_connected(20)

            # The other one reconnects and reports: re-learned at once.
            fleet.clients.remove(devices[back.username])
            d = await fleet.device(back.username, back.password)
            await d.publish(f"devices/{back.username}/health", HEALTH)
            shown = await alice.eventually_device(back.username, lambda x: x.online)
            assert shown.online and shown.presence_known

            # The vanished one is never shown online again: unknown, then (after the sweep) offline.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + OFFLINE_AFTER + 8
            states = set()
            while loop.time() < deadline:
                await d.publish(f"devices/{back.username}/health", HEALTH)  # the live one keeps reporting
                shown = await alice.get(gone.username)
                states.add((shown.online, shown.presence_known))
                if shown.presence_known:
                    break
                await asyncio.sleep(0.1)
            assert states <= {(False, False), (False, True)} and (False, True) in states, states
            totals = (await alice.dashboard.GetDashboard(dashboard_pb2.GetDashboardRequest(), metadata=alice.md)).totals
            assert (totals.devices, totals.online, totals.offline, totals.presence_known) == (2, 1, 1, True)
        finally:
            await asyncio.to_thread(fleet.close)
