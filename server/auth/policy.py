"""Who may call what: every RPC's access, declared once, here.

The interceptor looks each call up in this table; a method missing from it is refused (and a
test fails, so a new RPC cannot ship without a decision). PUBLIC needs no token; USER needs a
valid token of an active account; ADMIN additionally needs the admin role, read from the store
on each call so a demotion or block takes effect at once. Tenant isolation (a user sees only
their own devices) is enforced in core, per object.
"""

from __future__ import annotations

from enum import StrEnum


class Access(StrEnum):
    PUBLIC = "public"
    USER = "user"
    ADMIN = "admin"


PUBLIC, USER, ADMIN = Access.PUBLIC, Access.USER, Access.ADMIN

POLICY: dict[str, Access] = {
    "/iot.v1.AuthService/Register": PUBLIC,
    "/iot.v1.AuthService/Login": PUBLIC,
    "/iot.v1.AuthService/WhoAmI": USER,
    "/iot.v1.DeviceService/RegisterDevice": USER,
    "/iot.v1.DeviceService/ListDevices": USER,
    "/iot.v1.DeviceService/GetDevice": USER,
    "/iot.v1.DeviceService/DeleteDevice": USER,
    "/iot.v1.DeviceService/SetLed": USER,
    "/iot.v1.DeviceService/RotateCredentials": USER,
    "/iot.v1.DeviceService/WatchDeviceEvents": USER,
    "/iot.v1.OtaService/CheckUpdate": USER,
    "/iot.v1.OtaService/StartUpdate": USER,
    "/iot.v1.OtaService/ListOtaJobs": USER,
    "/iot.v1.OtaService/GetOtaJob": USER,
    "/iot.v1.OtaService/WatchOtaEvents": USER,
    "/iot.v1.ReleaseService/ListReleases": USER,
    "/iot.v1.ReleaseService/GetRelease": USER,
    "/iot.v1.ReleaseService/SetReleaseBlocked": ADMIN,
    "/iot.v1.RolloutService/CreateRollout": ADMIN,
    "/iot.v1.RolloutService/ListRollouts": ADMIN,
    "/iot.v1.RolloutService/GetRollout": ADMIN,
    "/iot.v1.RolloutService/PauseRollout": ADMIN,
    "/iot.v1.RolloutService/ResumeRollout": ADMIN,
    "/iot.v1.RolloutService/AbortRollout": ADMIN,
    "/iot.v1.AdminService/ListUsers": ADMIN,
    "/iot.v1.AdminService/ListDevices": ADMIN,
    "/iot.v1.AdminService/SetUserBlocked": ADMIN,
    "/iot.v1.AdminService/SetDeviceBlocked": ADMIN,
    "/iot.v1.AdminService/ListActivity": ADMIN,
    "/iot.v1.DashboardService/GetDashboard": USER,
}
