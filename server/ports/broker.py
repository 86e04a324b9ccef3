"""The broker port: how core provisions device credentials, talks to devices, and hears them.

Adapters live in server/mqtt (DynsecBrokerAdmin, MqttBridge). Core implements InboundHandler
(server/core/inbound.py).
Everything crossing this port is a plain value: no MQTT client, topic string or JSON here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from server.core.model import Heartbeat, JsonScalar, LedState, OtaJobStatus, OtaOffer


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """What a device needs to reach the broker; the password is shown to its owner once."""

    username: str
    password: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Reported actuator state from `devices/{id}/status`; `command_id` echoes a command's id.
    `led` is ON or OFF (a device never reports UNKNOWN; the validator refuses it)."""

    led: LedState | None = None
    command_id: str | None = None
    extra: dict[str, JsonScalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OtaStatusReport:
    """Progress of an OTA job from `devices/{id}/ota/status`. A device reports the job states
    themselves; whether the move is allowed is core's decision (core/ota_rules.py)."""

    job_id: str
    status: OtaJobStatus
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
    """Messages to devices, QoS 1. Raises Unavailable when the broker can't be reached. The
    adapter owns the wire format (SPEC section 5); core hands over typed values."""

    async def publish_led(self, device_id: str, command_id: str, state: LedState) -> None:
        """Tell the device to switch its LED (ON or OFF); it answers on its status topic,
        echoing `command_id`."""
        ...

    async def publish_ota(self, device_id: str, offer: OtaOffer) -> None: ...


class InboundHandler(Protocol):
    """What core does with validated device messages.

    Each method may raise NotFound (unknown device) or PermissionDenied (blocked device); the
    bridge counts those as dropped messages. Any other exception is logged and counted as a
    handler error; the bridge keeps going either way.
    """

    async def on_health(self, device_id: str, heartbeat: Heartbeat) -> None:
        """`heartbeat.device_id` is `device_id`."""
        ...

    async def on_status(self, device_id: str, report: StatusReport) -> None: ...

    async def on_presence(self, device_id: str, online: bool) -> None: ...

    async def on_ota_status(self, device_id: str, report: OtaStatusReport) -> None: ...
