"""AdminService: users and the activity log (fleet-wide devices land with the device core)."""

from __future__ import annotations

from typing import Any

from iot.v1 import admin_pb2, admin_pb2_grpc
from server.api import convert
from server.api.interceptors import current_caller
from server.core.activity import ActivityLog
from server.core.users import Users
from server.ports.store import ActivityFilter, UserFilter


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, users: Users, activity: ActivityLog) -> None:
        self._users = users
        self._activity = activity

    async def ListUsers(self, request: admin_pb2.ListUsersRequest, context: Any) -> admin_pb2.ListUsersResponse:
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
        self, request: admin_pb2.SetUserBlockedRequest, context: Any
    ) -> admin_pb2.SetUserBlockedResponse:
        # The seed's call has no body: absent means "block".
        blocked = request.blocked if request.HasField("blocked") else True
        user = await self._users.set_blocked(current_caller(), request.user_id, blocked)
        return admin_pb2.SetUserBlockedResponse(user=convert.user(user))

    async def ListActivity(
        self, request: admin_pb2.ListActivityRequest, context: Any
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

    # Fleet-wide device administration arrives with the device core (the devices issue).
    async def ListDevices(self, request: Any, context: Any) -> Any:
        raise NotImplementedError

    async def SetDeviceBlocked(self, request: Any, context: Any) -> Any:
        raise NotImplementedError
