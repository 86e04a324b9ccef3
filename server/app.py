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

from server.api.interceptors import Authorizer, CallInterceptor
from server.api.services import SERVICES, ServiceSpec
from server.settings import Settings

log = logging.getLogger("server.app")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ControlPlane:
    def __init__(self, settings: Settings, servicer_overrides: dict[str, Any] | None = None) -> None:
        self.settings = settings
        # Transport-level tests swap in a servicer by full service name; production passes none.
        self._overrides = dict(servicer_overrides or {})
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self.port = 0

    def _servicers(self) -> dict[str, Any]:
        """The servicer for each service; services without behaviour yet answer UNIMPLEMENTED."""
        return {}

    def _authorizer(self) -> Authorizer | None:
        return None

    async def start(self) -> int:
        server = grpc.aio.server(
            interceptors=(CallInterceptor(self._authorizer()),),
            options=(
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Keep idle streams (watches, Envoy's upstream connections) healthy.
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ),
        )
        implemented = {**self._servicers(), **self._overrides}
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
        log.info("grpc stopped")
