"""The API's services as the generated code describes them: names and registration functions.

Reflection, the access-policy check and the tests all iterate this one table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from iot.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    dashboard_pb2,
    dashboard_pb2_grpc,
    device_pb2,
    device_pb2_grpc,
    ota_pb2,
    ota_pb2_grpc,
    release_pb2,
    release_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
)


@dataclass(frozen=True)
class ServiceSpec:
    descriptor: ServiceDescriptor
    base: type
    add_to_server: Callable[[Any, Any], None]

    @property
    def full_name(self) -> str:
        return str(self.descriptor.full_name)

    def method_paths(self) -> list[str]:
        return [f"/{self.full_name}/{m.name}" for m in self.descriptor.methods]


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
        auth_pb2_grpc.AuthServiceServicer,
        auth_pb2_grpc.add_AuthServiceServicer_to_server,
    ),
    ServiceSpec(
        device_pb2.DESCRIPTOR.services_by_name["DeviceService"],
        device_pb2_grpc.DeviceServiceServicer,
        device_pb2_grpc.add_DeviceServiceServicer_to_server,
    ),
    ServiceSpec(
        ota_pb2.DESCRIPTOR.services_by_name["OtaService"],
        ota_pb2_grpc.OtaServiceServicer,
        ota_pb2_grpc.add_OtaServiceServicer_to_server,
    ),
    ServiceSpec(
        release_pb2.DESCRIPTOR.services_by_name["ReleaseService"],
        release_pb2_grpc.ReleaseServiceServicer,
        release_pb2_grpc.add_ReleaseServiceServicer_to_server,
    ),
    ServiceSpec(
        rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"],
        rollout_pb2_grpc.RolloutServiceServicer,
        rollout_pb2_grpc.add_RolloutServiceServicer_to_server,
    ),
    ServiceSpec(
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
        admin_pb2_grpc.AdminServiceServicer,
        admin_pb2_grpc.add_AdminServiceServicer_to_server,
    ),
    ServiceSpec(
        dashboard_pb2.DESCRIPTOR.services_by_name["DashboardService"],
        dashboard_pb2_grpc.DashboardServiceServicer,
        dashboard_pb2_grpc.add_DashboardServiceServicer_to_server,
    ),
)


def all_method_paths() -> list[str]:
    return [path for spec in SERVICES for path in spec.method_paths()]
