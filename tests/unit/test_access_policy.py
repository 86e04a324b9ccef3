from server.api.services import all_method_paths
from server.auth.policy import POLICY, Access


def test_every_rpc_declares_its_access_and_nothing_else_is_declared() -> None:
    methods = set(all_method_paths())
    assert methods - POLICY.keys() == set(), "RPCs without an access declaration"
    assert POLICY.keys() - methods == set(), "declarations for RPCs that do not exist"


def test_admin_surface_is_admin_only_and_only_login_and_register_are_public() -> None:
    assert {m for m, a in POLICY.items() if a is Access.PUBLIC} == {
        "/iot.v1.AuthService/Register",
        "/iot.v1.AuthService/Login",
    }
    assert all(a is Access.ADMIN for m, a in POLICY.items() if m.startswith("/iot.v1.AdminService/"))
