"""The composition root: Settings -> adapters -> core -> servers. The only module that knows every part.

`ControlPlane.start()` binds and returns the gRPC port (0 picks a free one, which the tests
use); `stop(grace)` stops accepting calls, lets in-flight ones finish within the grace period,
then closes what was opened, in reverse order.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.api.admin import AdminServicer
from server.api.auth import AuthServicer
from server.api.interceptors import Authorizer, CallInterceptor
from server.api.services import SERVICES, ServiceSpec
from server.auth.authorizer import PolicyAuthorizer
from server.auth.passwords import Passwords
from server.auth.tokens import Tokens
from server.core.activity import ActivityLog
from server.core.users import Users
from server.ports.clock import Clock, SystemClock
from server.ports.store import Store
from server.settings import Settings
from server.store.factory import open_store

log = logging.getLogger("server.app")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def make_users(settings: Settings, store: Store, activity: ActivityLog, clock: Clock) -> Users:
    tokens = Tokens(settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience, settings.jwt_ttl_seconds)
    return Users(store.users, Passwords(), tokens, activity, clock, min_password_length=settings.password_min_length)


async def create_admin(settings: Settings, email: str, password: str, username: str) -> str:
    """`python -m server create-admin`: create or promote an admin in the configured store."""
    store = await open_store(settings.mongo_uri or None, settings.data_dir)
    try:
        clock = SystemClock()
        users = make_users(settings, store, ActivityLog(store.activity, clock), clock)
        return (await users.ensure_admin(email, password, username)).user_id
    finally:
        await store.close()


class ControlPlane:
    def __init__(
        self,
        settings: Settings,
        servicer_overrides: dict[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        # Transport-level tests swap in a servicer by full service name; production passes none.
        self._overrides = dict(servicer_overrides or {})
        self.clock = clock or SystemClock()
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._store: Store | None = None
        self.port = 0

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the control plane is not started")
        return self._store

    async def _build(self) -> tuple[dict[str, Any], Authorizer]:
        """Adapters -> core -> servicers. Returns the servicer per service and the access check."""
        s = self.settings
        self._store = store = await open_store(s.mongo_uri or None, s.data_dir)
        self.activity = activity = ActivityLog(store.activity, self.clock)
        self.users = users = make_users(s, store, activity, self.clock)
        if s.admin_email:
            admin = await users.ensure_admin(s.admin_email, s.admin_password, s.admin_username)
            log.info("admin account ready", extra={"user_id": admin.user_id})
        servicers: dict[str, Any] = {
            "iot.v1.AuthService": AuthServicer(users),
            "iot.v1.AdminService": AdminServicer(users, activity),
        }
        return servicers, PolicyAuthorizer(users)

    async def start(self) -> int:
        try:
            servicers, authorizer = await self._build()
        except BaseException:
            await self._close_adapters()
            raise
        server = grpc.aio.server(
            interceptors=(CallInterceptor(authorizer),),
            options=(
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Keep idle streams (watches, Envoy's upstream connections) healthy.
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ),
        )
        implemented = {**servicers, **self._overrides}
        spec: ServiceSpec
        for spec in SERVICES:
            # The generated base servicer raises NotImplementedError: the interceptor answers
            # UNIMPLEMENTED with the RPC's name, never a fake success.
            servicer = implemented.get(spec.full_name) or spec.base()
            spec.add_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [spec.full_name for spec in SERVICES]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
        )
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC on {address}")
        await server.start()
        self._server = server
        for name in ["", *names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("grpc serving", extra={"address": f"{self.settings.grpc_host}:{self.port}"})
        return self.port

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        if self._server is None:
            return
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        # Tell load balancers first, so no new calls are routed here while we drain.
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
        await self._close_adapters()
        log.info("grpc stopped")

    async def _close_adapters(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
