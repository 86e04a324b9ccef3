"""The broker port: how core provisions device credentials, talks to devices, and hears them.

Adapters live in server/mqtt (DynsecBrokerAdmin, MqttBridge). Core implements InboundHandler.
Everything crossing this port is a plain value: no MQTT client, topic string or JSON here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

Scalar = int | float | str | bool
LedState = Literal["ON", "OFF"]


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """What a device needs to reach the broker; the password is shown to its owner once."""

    username: str
    password: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A heartbeat from `devices/{id}/health`."""

    firmware_version: str
    heap: int | None = None
    uptime: int | None = None
    rssi: int | None = None
    extra: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Reported actuator state from `devices/{id}/status`; `command_id` echoes a command's id."""

    led: LedState | None = None
    command_id: str | None = None
    extra: dict[str, Scalar] = field(default_factory=dict)


class OtaReportStatus(StrEnum):
    STARTED = "STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class OtaStatusReport:
    """Progress of an OTA job from `devices/{id}/ota/status`."""

    job_id: str
    status: OtaReportStatus
    progress: int | None = None
    error: str | None = None
    version: str | None = None


class BrokerAdmin(Protocol):
    """Per-device broker accounts. Raises Unavailable when the broker can't be reached."""

    async def create_device_client(self, device_id: str, password: str) -> DeviceCredentials:
        """Create (or, if it exists, re-key) the device's client, confined to devices/{id}/#;
        returns how the device connects."""
        ...

    async def set_device_enabled(self, device_id: str, enabled: bool) -> None:
        """Disabling also disconnects the device at once; it can't reconnect until enabled."""
        ...

    async def delete_device_client(self, device_id: str) -> None:
        """Remove the client and its role; disconnects it. Absent already: no error."""
        ...

    async def set_device_password(self, device_id: str, password: str) -> None:
        """Raises NotFound if the device has no client."""
        ...


class DevicePublisher(Protocol):
    """Messages to devices, QoS 1. Raises Unavailable when the broker can't be reached."""

    async def publish_command(self, device_id: str, payload: dict[str, Any]) -> None: ...

    async def publish_ota(self, device_id: str, payload: dict[str, Any]) -> None: ...


class InboundHandler(Protocol):
    """What core does with validated device messages.

    Each method may raise NotFound (unknown device) or PermissionDenied (blocked device); the
    bridge counts those as dropped messages. Any other exception is logged and counted as a
    handler error; the bridge keeps going either way.
    """

    async def on_health(self, device_id: str, report: HealthReport) -> None: ...

    async def on_status(self, device_id: str, report: StatusReport) -> None: ...

    async def on_presence(self, device_id: str, online: bool) -> None: ...

    async def on_ota_status(self, device_id: str, report: OtaStatusReport) -> None: ...
