"""AdminService: users, fleet-wide devices and the activity log."""

from __future__ import annotations

from grpc.aio import ServicerContext

from iot.v1 import admin_pb2, admin_pb2_grpc
from server.api import convert
from server.api.interceptors import current_caller
from server.core.activity import ActivityLog
from server.core.ota_status import LatestOtaStatus
from server.core.presence_view import PresenceView
from server.core.registry import DeviceRegistry
from server.core.users import Users
from server.ports.store import ActivityFilter, DeviceFilter, UserFilter


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        users: Users,
        activity: ActivityLog,
        devices: DeviceRegistry,
        ota_status: LatestOtaStatus,
        presence: PresenceView,
    ) -> None:
        self._presence = presence
        self._users = users
        self._activity = activity
        self._devices = devices
        self._ota_status = ota_status

    async def ListUsers(
        self,
        request: admin_pb2.ListUsersRequest,
        context: ServicerContext[admin_pb2.ListUsersRequest, admin_pb2.ListUsersResponse],
    ) -> admin_pb2.ListUsersResponse:
        flt = UserFilter(
            blocked=request.blocked if request.HasField("blocked") else None,
            role=convert.role_from_pb(request.role),
            email_prefix=request.email_prefix,
        )
        page = await self._users.list(flt, convert.page_request(request.page_size, request.page_token))
        return admin_pb2.ListUsersResponse(
            users=[convert.user(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def SetUserBlocked(
        self,
        request: admin_pb2.SetUserBlockedRequest,
        context: ServicerContext[admin_pb2.SetUserBlockedRequest, admin_pb2.SetUserBlockedResponse],
    ) -> admin_pb2.SetUserBlockedResponse:
        # The seed's call has no body: absent means "block".
        blocked = request.blocked if request.HasField("blocked") else True
        user = await self._users.set_blocked(current_caller(), request.user_id, blocked)
        return admin_pb2.SetUserBlockedResponse(user=convert.user(user))

    async def ListActivity(
        self,
        request: admin_pb2.ListActivityRequest,
        context: ServicerContext[admin_pb2.ListActivityRequest, admin_pb2.ListActivityResponse],
    ) -> admin_pb2.ListActivityResponse:
        flt = ActivityFilter(
            actor=request.actor or None,
            target=request.target or None,
            action=request.action or None,
            since=convert.from_timestamp(request.since, request.HasField("since")),
            until=convert.from_timestamp(request.until, request.HasField("until")),
        )
        page = await self._activity.list(flt, convert.page_request(request.page_size, request.page_token))
        return admin_pb2.ListActivityResponse(
            entries=[convert.activity(e) for e in page.items], next_page_token=page.next_page_token
        )

    async def ListDevices(
        self,
        request: admin_pb2.AdminServiceListDevicesRequest,
        context: ServicerContext[admin_pb2.AdminServiceListDevicesRequest, admin_pb2.AdminServiceListDevicesResponse],
    ) -> admin_pb2.AdminServiceListDevicesResponse:
        flt = DeviceFilter(
            owner_id=request.owner_id or None,
            online=request.online if request.HasField("online") else None,
            firmware_version=request.firmware_version or None,
            blocked=request.blocked if request.HasField("blocked") else None,
            platform=request.platform or None,
        )
        page_request = convert.page_request(request.page_size, request.page_token)
        caller = current_caller()
        page = await self._presence.listed(lambda f: self._devices.list(caller, f, page_request, fleet=True), flt)
        status = await self._ota_status.of([s.device for s in page.items])
        return admin_pb2.AdminServiceListDevicesResponse(
            devices=[convert.shown_device(s, status.get(s.device.device_id)) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def SetDeviceBlocked(
        self,
        request: admin_pb2.SetDeviceBlockedRequest,
        context: ServicerContext[admin_pb2.SetDeviceBlockedRequest, admin_pb2.SetDeviceBlockedResponse],
    ) -> admin_pb2.SetDeviceBlockedResponse:
        blocked = request.blocked if request.HasField("blocked") else True
        device = await self._devices.set_blocked(current_caller(), request.device_id, blocked)
        status = await self._ota_status.of([device])
        shown = self._presence.show(device)
        return admin_pb2.SetDeviceBlockedResponse(device=convert.shown_device(shown, status.get(device.device_id)))
