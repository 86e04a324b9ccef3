"""AuthService: thin translation between protobuf and core.users."""

from __future__ import annotations

from grpc.aio import ServicerContext

from iot.v1 import auth_pb2, auth_pb2_grpc
from server.api import convert
from server.api.interceptors import client_address_var, current_caller
from server.core.users import Users


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, users: Users) -> None:
        self._users = users

    async def Register(
        self,
        request: auth_pb2.RegisterRequest,
        context: ServicerContext[auth_pb2.RegisterRequest, auth_pb2.RegisterResponse],
    ) -> auth_pb2.RegisterResponse:
        user = await self._users.register(request.username, request.email, request.password)
        return auth_pb2.RegisterResponse(user=convert.user(user))

    async def Login(
        self, request: auth_pb2.LoginRequest, context: ServicerContext[auth_pb2.LoginRequest, auth_pb2.LoginResponse]
    ) -> auth_pb2.LoginResponse:
        result = await self._users.login(request.email, request.password, client_address_var.get())
        return auth_pb2.LoginResponse(token=result.token, expires_in=result.expires_in)

    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: ServicerContext[auth_pb2.WhoAmIRequest, auth_pb2.WhoAmIResponse]
    ) -> auth_pb2.WhoAmIResponse:
        user = await self._users.get(current_caller().user_id)
        return auth_pb2.WhoAmIResponse(user=convert.user(user))
