"""The gRPC server itself: health, reflection, the interceptor's error mapping, shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from iot.v1 import ota_pb2, ota_pb2_grpc
from server.api.services import SERVICES
from server.app import ControlPlane
from server.core import errors
from tests.support.servers import make_settings, running_plane, user_token


class ScriptedOta(ota_pb2_grpc.OtaServiceServicer):
    """Raises whatever the test asks for, to exercise the one error-mapping interceptor."""

    async def CheckUpdate(self, request: Any, context: Any) -> ota_pb2.CheckUpdateResponse:
        match request.device_id:
            case "missing":
                raise errors.NotFound("device missing not found")
            case "throttled":
                raise errors.ResourceExhausted("slow down", retry_after=7)
            case "crash":
                raise RuntimeError("secret internal detail")
            case "slow":
                await asyncio.sleep(0.5)
        return ota_pb2.CheckUpdateResponse(update_available=True, latest_version="1.1.0")


def scripted_ota() -> ota_pb2_grpc.OtaServiceServicer:
    # Deliberately partial: the other RPCs fall back to the generated base (UNIMPLEMENTED).
    return ScriptedOta()  # type: ignore[abstract]


@pytest.fixture
async def plane(tmp_path: Path) -> Any:
    plane = ControlPlane(make_settings(tmp_path), {"iot.v1.OtaService": scripted_ota()})
    async with running_plane(plane):
        yield plane


async def test_health_is_serving_for_the_server_and_each_service(plane: ControlPlane) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ["", *(spec.full_name for spec in SERVICES)]:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_every_service(plane: ControlPlane) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = set()
        async for reply in call:
            names |= {s.name for s in reply.list_services_response.service}
    assert {spec.full_name for spec in SERVICES} <= names
    assert "grpc.health.v1.Health" in names


async def test_unimplemented_rpc_says_so_with_its_name(plane: ControlPlane) -> None:
    token = await user_token(plane)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ota_pb2_grpc.OtaServiceStub(channel).StartUpdate(
                ota_pb2.StartUpdateRequest(device_id="d1"), metadata=(("authorization", f"Bearer {token}"),)
            )
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "OtaService.StartUpdate is not implemented yet" in (info.value.details() or "")


async def check(plane: ControlPlane, device_id: str) -> grpc.aio.AioRpcError:
    token = await user_token(plane, f"u{device_id}")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ota_pb2_grpc.OtaServiceStub(channel).CheckUpdate(
                ota_pb2.CheckUpdateRequest(device_id=device_id), metadata=(("authorization", f"Bearer {token}"),)
            )
    return info.value


async def test_domain_errors_map_to_status_codes(plane: ControlPlane) -> None:
    error = await check(plane, "missing")
    assert error.code() == grpc.StatusCode.NOT_FOUND and error.details() == "device missing not found"


async def test_rate_limit_carries_a_retry_hint(plane: ControlPlane) -> None:
    error = await check(plane, "throttled")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds == 7


async def test_unknown_exceptions_are_internal_without_leaking_text(plane: ControlPlane) -> None:
    error = await check(plane, "crash")
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (error.details() or "")


async def test_shutdown_drains_in_flight_calls(tmp_path: Path) -> None:
    plane = ControlPlane(make_settings(tmp_path), {"iot.v1.OtaService": scripted_ota()})
    await plane.start()
    token = await user_token(plane)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        stub = ota_pb2_grpc.OtaServiceStub(channel)
        in_flight = asyncio.ensure_future(
            stub.CheckUpdate(
                ota_pb2.CheckUpdateRequest(device_id="slow"), metadata=(("authorization", f"Bearer {token}"),)
            )
        )
        await asyncio.sleep(0.1)
        await plane.stop(grace=5)
        reply = await in_flight
    assert reply.latest_version == "1.1.0"
