"""Mosquitto dynamic-security commands, built as plain data (no I/O).

Two places keep a broker account in shape: the launcher (tools/mosquitto.py, blocking paho)
ensures the backend's role and client at every broker start, and the control plane
(server/mqtt/provisioning.py, aiomqtt) ensures one per device at registration and rotation.
Each keeps its own transport; the steps live here, once.

"Ensure" is two rounds. First look (`getRole`, `getClient`), then send only what is missing:
Mosquitto 2.0 answers a repeated `addClientRole` with "Internal error", so blind re-adds could
not tell a real failure from a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.mqtt.topics import device_filter, is_valid_device_id

TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = TOPIC + "/response"

Command = dict[str, Any]
Response = dict[str, Any]
Acl = tuple[str, str]  # (acltype, topic pattern), always "allow"

BACKEND_ROLE = "backend"
# The control plane subscribes (shared or not) and publishes under devices/, and provisions device
# clients at run time through the dynamic-security control topic.
BACKEND_ACLS: tuple[Acl, ...] = (
    ("publishClientSend", "devices/#"),
    ("publishClientReceive", "devices/#"),
    ("subscribePattern", "devices/#"),
    ("subscribePattern", "$share/+/devices/#"),
    ("unsubscribePattern", "devices/#"),
    ("unsubscribePattern", "$share/+/devices/#"),
    ("publishClientSend", "$CONTROL/dynamic-security/#"),
    ("publishClientReceive", "$CONTROL/dynamic-security/#"),
    ("subscribePattern", "$CONTROL/dynamic-security/#"),
)
DEVICE_ROLE_PREFIX = "device-"


class DynsecError(Exception):
    """The plugin refused one command; `error` is its own text."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error

    @property
    def not_found(self) -> bool:
        return "not found" in self.error.lower()

    @property
    def exists(self) -> bool:
        return "already exists" in self.error.lower()


class ForeignAccount(Exception):
    """The username belongs to an account made for something else (other roles or groups)."""

    def __init__(self, username: str) -> None:
        super().__init__(f"broker account {username!r} exists")
        self.username = username


@dataclass(frozen=True, slots=True)
class Account:
    """A broker client and the one role that defines what it may do."""

    username: str
    password: str
    role: str
    acls: tuple[Acl, ...]
    # The only MQTT client id this account may connect with; None lets it use any (the backend's
    # replicas each pick their own). Without it, anyone holding valid credentials of another
    # account could connect with a device's client id and the broker would drop the device's
    # session for the newcomer's (its Last Will then reports it offline).
    client_id: str | None = None
    # Re-enable a disabled client. The launcher does (it repairs the backend); a device keeps a
    # disable, which is how blocking works.
    enable: bool = False
    # Refuse an existing client that holds other roles or groups: a device registered under the
    # name of a hand-made account must not take it over.
    exclusive: bool = False


def device_role(device_id: str) -> str:
    return DEVICE_ROLE_PREFIX + device_id


def device_acls(device_id: str) -> tuple[Acl, ...]:
    own = device_filter(device_id)
    return (("publishClientSend", own), ("subscribePattern", own))


def device_account(device_id: str, password: str) -> Account:
    """A device: its own username and role, confined to devices/{id}/#, bound to client id == id."""
    return Account(
        device_id, password, device_role(device_id), device_acls(device_id), client_id=device_id, exclusive=True
    )


def backend_account(username: str, password: str) -> Account:
    return Account(username, password, BACKEND_ROLE, BACKEND_ACLS, enable=True)


def look_up(account: Account) -> list[Command]:
    """Round one: what the broker has now. Feed the two responses, in order, to `ensure`."""
    return [
        {"command": "getRole", "rolename": account.role},
        {"command": "getClient", "username": account.username},
    ]


def ensure(account: Account, role_response: Response, client_response: Response) -> list[Command]:
    """Round two: the commands that bring the role and client to `account`, and no more.

    An existing client always gets the password (that is how a password is rotated).
    Raises ForeignAccount for an `exclusive` account whose client holds anything else.
    """
    commands: list[Command] = []
    have: set[Acl] = set()
    if role_response.get("error"):
        commands.append({"command": "createRole", "rolename": account.role})
    else:
        have = {(a["acltype"], a["topic"]) for a in role_response["data"]["role"].get("acls", []) if a.get("allow")}
    commands += [
        {"command": "addRoleACL", "rolename": account.role, "acltype": t, "topic": f, "allow": True}
        for t, f in account.acls
        if (t, f) not in have
    ]
    if client_response.get("error"):
        create: Command = {
            "command": "createClient",
            "username": account.username,
            "password": account.password,
            "roles": [{"rolename": account.role}],
        }
        if account.client_id is not None:
            create["clientid"] = account.client_id
        commands.append(create)
        return commands
    client = client_response["data"]["client"]
    roles = {r.get("rolename") for r in client.get("roles", [])}
    if account.exclusive and (roles - {account.role} or client.get("groups")):
        raise ForeignAccount(account.username)
    commands.append(set_password(account.username, account.password))
    if account.role not in roles:
        commands.append({"command": "addClientRole", "username": account.username, "rolename": account.role})
    if account.enable and client.get("disabled"):
        commands.append(set_enabled(account.username, True))
    if account.client_id is not None and client.get("clientid") != account.client_id:
        # Accounts made before the binding existed get it on their next rotation.
        commands.append(bind_client_id(account.username, account.client_id))
    return commands


def bind_client_id(username: str, client_id: str) -> Command:
    """Like every modifyClient, this also disconnects the client's open sessions."""
    return {"command": "modifyClient", "username": username, "clientid": client_id}


def list_clients() -> Command:
    """Every client with its roles, groups and client id (`verbose`), unpaged."""
    return {"command": "listClients", "verbose": True}


def bind_device_client_ids(list_response: Response) -> list[Command]:
    """For a `listClients` answer: bind each device account not yet bound to its client id.

    A device account is one this module made: username a device id, holding exactly its own
    device role and no group. Others (admin, backend, hand-made) are left alone. An account
    already bound sends nothing, so running this at every start costs one listing.
    """
    commands: list[Command] = []
    for client in list_response.get("data", {}).get("clients", []):
        username = client.get("username")
        if not isinstance(username, str) or not is_valid_device_id(username):
            continue
        roles = {r.get("rolename") for r in client.get("roles", [])}
        if roles != {device_role(username)} or client.get("groups") or client.get("clientid") == username:
            continue
        commands.append(bind_client_id(username, username))
    return commands


def set_password(username: str, password: str) -> Command:
    return {"command": "setClientPassword", "username": username, "password": password}


def set_enabled(username: str, enabled: bool) -> Command:
    """Disabling also disconnects every session of the client at once."""
    return {"command": "enableClient" if enabled else "disableClient", "username": username}


def remove_device(device_id: str) -> list[Command]:
    """Its client and its role; a "not found" answer to either means already gone."""
    return [
        {"command": "deleteClient", "username": device_id},
        {"command": "deleteRole", "rolename": device_role(device_id)},
    ]


def errors(responses: Sequence[Response]) -> list[DynsecError]:
    return [DynsecError(str(r.get("command", "?")), str(r["error"])) for r in responses if r.get("error")]


def check(responses: Sequence[Response]) -> None:
    """Raise the first refusal among `responses`."""
    for err in errors(responses):
        raise err


# ---- framing: one request, many commands, answered on RESPONSE_TOPIC to every subscriber ---------


def encode_request(commands: Sequence[Command], correlation: str) -> str:
    """The request payload. Each command carries `<correlation>:<index>`, so its sender (and only
    it) can claim the answer among everyone's on the shared response topic."""
    tagged = [{**c, "correlationData": f"{correlation}:{i}"} for i, c in enumerate(commands)]
    return json.dumps({"commands": tagged})


def decode_response(payload: bytes | bytearray | str) -> tuple[str, list[Response]] | None:
    """(correlation, responses) of an answer on RESPONSE_TOPIC; None for anything else."""
    try:
        responses = json.loads(payload)["responses"]
        correlation = str(responses[0]["correlationData"]).split(":", 1)[0]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return None
    if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
        return None
    return correlation, responses
