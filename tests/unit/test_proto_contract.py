"""The contract in proto/: every RPC reachable over REST, the seed's paths exactly."""

from google.api import annotations_pb2

from server.api.services import SERVICES

SEED_PATHS = {
    ("post", "/api/auth/register"): "iot.v1.AuthService.Register",
    ("post", "/api/auth/login"): "iot.v1.AuthService.Login",
    ("post", "/api/device/register"): "iot.v1.DeviceService.RegisterDevice",
    ("get", "/api/device"): "iot.v1.DeviceService.ListDevices",
    ("post", "/api/device/{device_id}/led"): "iot.v1.DeviceService.SetLed",
    ("get", "/api/ota/{device_id}/check"): "iot.v1.OtaService.CheckUpdate",
    ("post", "/api/ota/{device_id}/start"): "iot.v1.OtaService.StartUpdate",
    ("get", "/api/dashboard"): "iot.v1.DashboardService.GetDashboard",
    ("get", "/api/admin/users"): "iot.v1.AdminService.ListUsers",
    ("get", "/api/admin/devices"): "iot.v1.AdminService.ListDevices",
    ("post", "/api/admin/user/{user_id}/block"): "iot.v1.AdminService.SetUserBlocked",
    ("post", "/api/admin/device/{device_id}/block"): "iot.v1.AdminService.SetDeviceBlocked",
}


def http_rules() -> dict[tuple[str, str], str]:
    rules = {}
    for spec in SERVICES:
        for method in spec.descriptor.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            assert verb, f"{method.full_name} has no google.api.http annotation"
            rules[(verb, getattr(rule, verb))] = method.full_name
    return rules


def test_every_rpc_has_a_unique_rest_mapping() -> None:
    rules = http_rules()
    assert len(rules) == sum(len(spec.descriptor.methods) for spec in SERVICES)


def test_the_twelve_seed_paths_map_exactly() -> None:
    rules = http_rules()
    for key, rpc in SEED_PATHS.items():
        assert rules.get(key) == rpc, f"{key} should map to {rpc}, maps to {rules.get(key)}"


def test_seed_json_field_names_are_camel_case() -> None:
    from iot.v1 import device_pb2, ota_pb2

    assert ota_pb2.CheckUpdateResponse.DESCRIPTOR.fields_by_name["update_available"].json_name == "updateAvailable"
    assert ota_pb2.CheckUpdateResponse.DESCRIPTOR.fields_by_name["latest_version"].json_name == "latestVersion"
    assert device_pb2.RegisterDeviceRequest.DESCRIPTOR.fields_by_name["device_id"].json_name == "deviceId"
