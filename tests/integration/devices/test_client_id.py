"""Client-id takeover (issue 10 item 2): a device account connects only with client id == its id.

MQTT lets a new connection with a client id already in use replace the old session. Before the
binding, any device could connect with its own credentials and a victim's client id: the broker
dropped the victim, its Last Will fired, and the control plane showed it offline.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from iot.v1 import admin_pb2, device_pb2
from server.app import ControlPlane
from server.mqtt import dynsec
from tests.integration.devices.conftest import HEALTH, Api, Fleet, new_id, plane_settings
from tests.support.mosquitto import BrokerUnderTest, DeviceClient
from tests.support.servers import running_plane
from tools.mosquitto import dynsec_commands

NOT_AUTHORIZED = 0x87


async def actions(api: Api, device_id: str) -> list[str]:
    reply = await api.admin.ListActivity(admin_pb2.ListActivityRequest(target=device_id), metadata=api.md)
    return [e.action for e in reversed(reply.entries)]


def as_admin(broker: BrokerUnderTest, commands: list[dynsec.Command]) -> list[dynsec.Response]:
    return dynsec_commands(
        broker.host, broker.port, username=broker.admin_user, password=broker.admin_password, commands=commands
    )


async def test_a_device_cannot_take_over_another_devices_client_id(fleet: Fleet) -> None:
    alice, mallory, root = await fleet.user(), await fleet.user(), await fleet.user(admin=True)
    victim = (await alice.register()).mqtt
    mine = (await mallory.register()).mqtt
    # The registration says which client id to use.
    assert (victim.client_id, mine.client_id) == (victim.username, mine.username)
    v = await fleet.device(victim.username, victim.password)  # Last Will "offline", then "online"
    assert (await alice.eventually_device(victim.username, lambda x: x.online)).online

    # mosquitto_sub -i VICTIM -u MINE -P MYPW
    attacker = DeviceClient(fleet.broker.host, fleet.broker.port, mine.username, mine.password, victim.client_id)
    fleet.clients.append(attacker)
    rc = await asyncio.to_thread(attacker.connect)
    assert rc is not None and rc.value == NOT_AUTHORIZED, rc

    # The victim's session was never touched: still connected, still heard, still online.
    await asyncio.sleep(0.5)
    assert not v.disconnected.is_set() and v.client.is_connected()
    ack = await v.publish(f"devices/{victim.username}/health", HEALTH)
    assert ack is not None and not ack.is_failure
    device = await alice.eventually_device(victim.username, lambda x: x.health.heap == 20000)
    assert device.online and device.health.heap == 20000
    assert await actions(root, victim.username) == ["device.register", "device.online"]

    # The attacker's own account still works, under its own client id only.
    own = await fleet.device(mine.username, mine.password)
    assert own.connack is not None and not own.connack.is_failure


async def test_the_victim_itself_is_refused_under_any_other_client_id(fleet: Fleet) -> None:
    alice = await fleet.user()
    creds = (await alice.register()).mqtt
    other = DeviceClient(fleet.broker.host, fleet.broker.port, creds.username, creds.password, f"{creds.username}-2")
    fleet.clients.append(other)
    rc = await asyncio.to_thread(other.connect)
    assert rc is not None and rc.value == NOT_AUTHORIZED, rc


async def test_accounts_made_before_the_binding_are_bound_at_start_up(fleet: Fleet, tmp_path: Path) -> None:
    # A device account as provisioning made it before client ids were bound, and one made by hand.
    old, by_hand = new_id("old"), new_id("hand")
    unbound = replace(dynsec.device_account(old, "old-pw"), client_id=None)
    dynsec.check(as_admin(fleet.broker, dynsec.ensure(unbound, {"error": "Role not found"}, {"error": "not found"})))
    dynsec.check(as_admin(fleet.broker, [{"command": "createClient", "username": by_hand, "password": "x"}]))
    before = DeviceClient(fleet.broker.host, fleet.broker.port, old, "old-pw", "any-id")
    fleet.clients.append(before)
    rc = await asyncio.to_thread(before.connect)
    assert rc is not None and not rc.is_failure  # open to takeover, as before the fix
    before.close()

    async with running_plane(ControlPlane(plane_settings(tmp_path, fleet.broker))):
        pass

    got = as_admin(fleet.broker, [{"command": "getClient", "username": u} for u in (old, by_hand)])
    assert got[0]["data"]["client"].get("clientid") == old
    assert "clientid" not in got[1]["data"]["client"]  # not a device account: left alone
    after = DeviceClient(fleet.broker.host, fleet.broker.port, old, "old-pw", "any-id")
    fleet.clients.append(after)
    rc = await asyncio.to_thread(after.connect)
    assert rc is not None and rc.value == NOT_AUTHORIZED, rc
    await fleet.device(old, "old-pw", online=False)  # its own id still works


async def test_rotating_credentials_binds_an_account_made_before_the_binding(fleet: Fleet) -> None:
    alice = await fleet.user()
    creds = (await alice.register()).mqtt
    dynsec.check(as_admin(fleet.broker, [dynsec.bind_client_id(creds.username, "")]))  # as before the fix
    reply = await alice.devices.RotateCredentials(
        device_pb2.RotateCredentialsRequest(device_id=creds.username), metadata=alice.md
    )
    assert reply.mqtt.client_id == creds.username
    (got,) = as_admin(fleet.broker, [{"command": "getClient", "username": creds.username}])
    assert got["data"]["client"].get("clientid") == creds.username
    other = DeviceClient(fleet.broker.host, fleet.broker.port, creds.username, reply.mqtt.password, "any-id")
    fleet.clients.append(other)
    rc = await asyncio.to_thread(other.connect)
    assert rc is not None and rc.value == NOT_AUTHORIZED, rc
