"""The dynamic-security command builder: what each observed broker state turns into.

The broker's own behaviour (that these commands do what they say) is tested against a real
Mosquitto in tests/integration/mqtt/test_provisioning.py and through every broker start.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.mqtt import dynsec

NOT_FOUND_ROLE = {"command": "getRole", "error": "Role not found"}
NOT_FOUND_CLIENT = {"command": "getClient", "error": "Client not found"}


def role_found(role: str, acls: tuple[dynsec.Acl, ...]) -> dynsec.Response:
    return {
        "command": "getRole",
        "data": {
            "role": {
                "rolename": role,
                "acls": [{"acltype": t, "topic": f, "priority": 0, "allow": True} for t, f in acls],
            }
        },
    }


def client_found(username: str, roles: tuple[str, ...] = (), **extra: object) -> dynsec.Response:
    client = {"username": username, "roles": [{"rolename": r} for r in roles], "groups": [], **extra}
    return {"command": "getClient", "data": {"client": client}}


def names(commands: list[dynsec.Command]) -> list[str]:
    return [c["command"] for c in commands]


def test_look_up_asks_for_the_role_then_the_client() -> None:
    account = dynsec.device_account("esp-1", "pw")
    assert dynsec.look_up(account) == [
        {"command": "getRole", "rolename": "device-esp-1"},
        {"command": "getClient", "username": "esp-1"},
    ]


def test_a_new_device_gets_a_role_confined_to_its_topics_and_a_client_holding_it() -> None:
    account = dynsec.device_account("esp-1", "pw")
    commands = dynsec.ensure(account, NOT_FOUND_ROLE, NOT_FOUND_CLIENT)
    assert commands == [
        {"command": "createRole", "rolename": "device-esp-1"},
        {
            "command": "addRoleACL",
            "rolename": "device-esp-1",
            "acltype": "publishClientSend",
            "topic": "devices/esp-1/#",
            "allow": True,
        },
        {
            "command": "addRoleACL",
            "rolename": "device-esp-1",
            "acltype": "subscribePattern",
            "topic": "devices/esp-1/#",
            "allow": True,
        },
        {
            "command": "createClient",
            "username": "esp-1",
            "password": "pw",
            "roles": [{"rolename": "device-esp-1"}],
            # Bound: no other account can connect as "esp-1" and take over its session.
            "clientid": "esp-1",
        },
    ]


def test_an_account_in_shape_only_gets_its_password_set() -> None:
    account = dynsec.device_account("esp-1", "new")
    commands = dynsec.ensure(
        account, role_found(account.role, account.acls), client_found("esp-1", (account.role,), clientid="esp-1")
    )
    assert commands == [{"command": "setClientPassword", "username": "esp-1", "password": "new"}]


@pytest.mark.parametrize("clientid", [None, "", "someone-else"])
def test_rotation_binds_a_device_account_to_its_client_id(clientid: str | None) -> None:
    account = dynsec.device_account("esp-1", "new")
    extra = {} if clientid is None else {"clientid": clientid}
    commands = dynsec.ensure(
        account, role_found(account.role, account.acls), client_found("esp-1", (account.role,), **extra)
    )
    assert commands == [
        {"command": "setClientPassword", "username": "esp-1", "password": "new"},
        {"command": "modifyClient", "username": "esp-1", "clientid": "esp-1"},
    ]


def test_the_backend_is_never_bound_to_a_client_id() -> None:
    # Each control-plane replica connects with its own client id.
    account = dynsec.backend_account("backend", "pw")
    for client in (
        {"command": "getClient", "error": "Client not found"},
        client_found("backend", (account.role,)),
    ):
        commands = dynsec.ensure(account, role_found(account.role, account.acls), client)
        assert all("clientid" not in c and c["command"] != "modifyClient" for c in commands)


def test_start_up_binds_only_device_accounts_not_yet_bound() -> None:
    listing = {
        "command": "listClients",
        "data": {
            "clients": [
                client_found("admin", ("admin",))["data"]["client"],
                client_found("backend", ("backend",))["data"]["client"],
                client_found("old-1", ("device-old-1",))["data"]["client"],
                client_found("old-2", ("device-old-2",), clientid="wrong")["data"]["client"],
                client_found("new-1", ("device-new-1",), clientid="new-1")["data"]["client"],
                client_found("hand", ())["data"]["client"],
                client_found("mixed", ("device-mixed", "admin"))["data"]["client"],
                client_found("other", ("device-someone",))["data"]["client"],
                {"username": "grouped", "roles": [{"rolename": "device-grouped"}], "groups": [{"groupname": "g"}]},
                {"username": "a/b", "roles": [{"rolename": "device-a/b"}], "groups": []},
                {"roles": []},
            ]
        },
    }
    assert dynsec.bind_device_client_ids(listing) == [
        {"command": "modifyClient", "username": "old-1", "clientid": "old-1"},
        {"command": "modifyClient", "username": "old-2", "clientid": "old-2"},
    ]
    assert dynsec.bind_device_client_ids({"command": "listClients", "error": "Internal error"}) == []


def test_only_missing_acls_and_a_missing_role_grant_are_sent() -> None:
    # A repeated addClientRole is answered "Internal error" by Mosquitto 2.0: never send one blind.
    account = dynsec.backend_account("backend", "pw")
    half = account.acls[: len(account.acls) // 2]
    commands = dynsec.ensure(account, role_found(account.role, half), client_found("backend"))
    added = [(c["acltype"], c["topic"]) for c in commands if c["command"] == "addRoleACL"]
    assert added == list(account.acls[len(half) :])
    assert names(commands)[-2:] == ["setClientPassword", "addClientRole"]
    assert commands[-1] == {"command": "addClientRole", "username": "backend", "rolename": "backend"}


def test_a_denied_acl_of_the_same_pattern_does_not_count_as_granted() -> None:
    account = dynsec.device_account("esp-1", "pw")
    role = role_found(account.role, account.acls)
    role["data"]["role"]["acls"][0]["allow"] = False
    commands = dynsec.ensure(account, role, client_found("esp-1", roles=(account.role,)))
    assert [c for c in commands if c["command"] == "addRoleACL"] == [
        {
            "command": "addRoleACL",
            "rolename": account.role,
            "acltype": "publishClientSend",
            "topic": "devices/esp-1/#",
            "allow": True,
        }
    ]


def test_the_backend_is_re_enabled_but_a_disabled_device_stays_disabled() -> None:
    backend = dynsec.backend_account("backend", "pw")
    commands = dynsec.ensure(
        backend, role_found(backend.role, backend.acls), client_found("backend", (backend.role,), disabled=True)
    )
    assert commands[-1] == {"command": "enableClient", "username": "backend"}
    # A blocked device is a disabled client; rotating its password must not unblock it.
    device = dynsec.device_account("esp-1", "pw")
    commands = dynsec.ensure(
        device, role_found(device.role, device.acls), client_found("esp-1", (device.role,), disabled=True)
    )
    assert "enableClient" not in names(commands)


@pytest.mark.parametrize(
    "client",
    [
        client_found("esp-1", roles=("device-esp-1", "admin")),
        client_found("esp-1", roles=("admin",)),
        {"command": "getClient", "data": {"client": {"username": "esp-1", "groups": [{"groupname": "ops"}]}}},
    ],
)
def test_a_device_never_takes_over_an_account_made_for_something_else(client: dynsec.Response) -> None:
    account = dynsec.device_account("esp-1", "pw")
    with pytest.raises(dynsec.ForeignAccount):
        dynsec.ensure(account, NOT_FOUND_ROLE, client)


def test_removing_a_device_deletes_its_client_and_its_role() -> None:
    assert dynsec.remove_device("esp-1") == [
        {"command": "deleteClient", "username": "esp-1"},
        {"command": "deleteRole", "rolename": "device-esp-1"},
    ]


def test_errors_are_read_per_command_and_classified() -> None:
    responses = [
        {"command": "createRole"},
        {"command": "deleteClient", "error": "Client not found"},
        {"command": "createClient", "error": "Client already exists"},
    ]
    errs = dynsec.errors(responses)
    assert [(e.command, e.not_found, e.exists) for e in errs] == [
        ("deleteClient", True, False),
        ("createClient", False, True),
    ]
    with pytest.raises(dynsec.DynsecError, match="deleteClient: Client not found"):
        dynsec.check(responses)
    dynsec.check(responses[:1])


def test_a_request_round_trips_through_the_plugins_answer_shape() -> None:
    commands = dynsec.look_up(dynsec.device_account("esp-1", "pw"))
    request = json.loads(dynsec.encode_request(commands, "abc"))
    # The plugin echoes each command's correlationData in its response.
    answer = {
        "responses": [{"command": c["command"], "correlationData": c["correlationData"]} for c in request["commands"]]
    }
    assert [c["correlationData"] for c in request["commands"]] == ["abc:0", "abc:1"]
    assert dynsec.decode_response(json.dumps(answer).encode()) == ("abc", answer["responses"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(st.binary() | json_values.map(lambda v: json.dumps(v).encode()))
def test_anything_else_on_the_response_topic_is_ignored_not_raised(payload: bytes) -> None:
    answer = dynsec.decode_response(payload)
    assert answer is None or isinstance(answer[0], str)


def test_a_hostile_answer_is_ignored() -> None:
    assert dynsec.decode_response(b"[" * 100_000) is None
    assert dynsec.decode_response(b'{"responses": [{"correlationData": ' + b"9" * 5000 + b"}]}") is None
    assert dynsec.decode_response(b'{"responses": []}') is None
    assert dynsec.decode_response(b'{"responses": [{"correlationData": "a:0"}, 3]}') is None
