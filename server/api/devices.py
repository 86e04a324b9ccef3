"""DeviceService: a user's own devices (an admin's: any device), thin over core.registry and core.led."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from iot.v1 import device_pb2, device_pb2_grpc
from server.api import convert
from server.api.interceptors import current_caller
from server.core.fleet_events import DeviceEventKind
from server.core.led import LedCommands
from server.core.ota_status import LatestOtaStatus
from server.core.presence_view import PresenceView
from server.core.registry import DeviceRegistry
from server.ports.store import DeviceFilter

EVENT_KIND_TO_PB = {
    DeviceEventKind.ONLINE: device_pb2.DEVICE_ONLINE,
    DeviceEventKind.OFFLINE: device_pb2.DEVICE_OFFLINE,
    DeviceEventKind.HEALTH: device_pb2.DEVICE_HEALTH,
    DeviceEventKind.STATUS: device_pb2.DEVICE_STATUS,
    DeviceEventKind.REGISTERED: device_pb2.DEVICE_REGISTERED,
    DeviceEventKind.DELETED: device_pb2.DEVICE_DELETED,
    DeviceEventKind.BLOCKED: device_pb2.DEVICE_BLOCKED,
    DeviceEventKind.UNBLOCKED: device_pb2.DEVICE_UNBLOCKED,
}


class DeviceServicer(device_pb2_grpc.DeviceServiceServicer):
    def __init__(
        self, devices: DeviceRegistry, led: LedCommands, ota_status: LatestOtaStatus, presence: PresenceView
    ) -> None:
        self._devices = devices
        self._led = led
        self._ota_status = ota_status
        self._presence = presence

    async def RegisterDevice(
        self,
        request: device_pb2.RegisterDeviceRequest,
        context: ServicerContext[device_pb2.RegisterDeviceRequest, device_pb2.RegisterDeviceResponse],
    ) -> device_pb2.RegisterDeviceResponse:
        reg = await self._devices.register(current_caller(), request.device_id, request.name, request.platform)
        return device_pb2.RegisterDeviceResponse(
            device=convert.shown_device(self._presence.show(reg.device)), mqtt=convert.mqtt_credentials(reg.credentials)
        )

    async def ListDevices(
        self,
        request: device_pb2.ListDevicesRequest,
        context: ServicerContext[device_pb2.ListDevicesRequest, device_pb2.ListDevicesResponse],
    ) -> device_pb2.ListDevicesResponse:
        flt = DeviceFilter(
            online=request.online if request.HasField("online") else None,
            firmware_version=request.firmware_version or None,
        )
        page_request = convert.page_request(request.page_size, request.page_token)
        caller = current_caller()
        page = await self._presence.listed(lambda f: self._devices.list(caller, f, page_request), flt)
        status = await self._ota_status.of([s.device for s in page.items])
        return device_pb2.ListDevicesResponse(
            devices=[convert.shown_device(s, status.get(s.device.device_id)) for s in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetDevice(
        self,
        request: device_pb2.GetDeviceRequest,
        context: ServicerContext[device_pb2.GetDeviceRequest, device_pb2.GetDeviceResponse],
    ) -> device_pb2.GetDeviceResponse:
        device = await self._devices.get(current_caller(), request.device_id)
        status = await self._ota_status.of([device])
        shown = self._presence.show(device)
        return device_pb2.GetDeviceResponse(device=convert.shown_device(shown, status.get(device.device_id)))

    async def DeleteDevice(
        self,
        request: device_pb2.DeleteDeviceRequest,
        context: ServicerContext[device_pb2.DeleteDeviceRequest, device_pb2.DeleteDeviceResponse],
    ) -> device_pb2.DeleteDeviceResponse:
        await self._devices.delete(current_caller(), request.device_id)
        return device_pb2.DeleteDeviceResponse()

    async def SetLed(
        self,
        request: device_pb2.SetLedRequest,
        context: ServicerContext[device_pb2.SetLedRequest, device_pb2.SetLedResponse],
    ) -> device_pb2.SetLedResponse:
        state = convert.led_from_pb(request.state)
        timeout = request.timeout_ms / 1000 if request.timeout_ms > 0 else None
        result = await self._led.set_led(current_caller(), request.device_id, state, timeout)
        return device_pb2.SetLedResponse(
            command_id=result.command_id, acknowledged=result.acknowledged, state=convert.LED_TO_PB[result.state]
        )

    async def RotateCredentials(
        self,
        request: device_pb2.RotateCredentialsRequest,
        context: ServicerContext[device_pb2.RotateCredentialsRequest, device_pb2.RotateCredentialsResponse],
    ) -> device_pb2.RotateCredentialsResponse:
        creds = await self._devices.rotate_credentials(current_caller(), request.device_id)
        return device_pb2.RotateCredentialsResponse(mqtt=convert.mqtt_credentials(creds))

    async def WatchDeviceEvents(
        self,
        request: device_pb2.WatchDeviceEventsRequest,
        context: ServicerContext[device_pb2.WatchDeviceEventsRequest, device_pb2.WatchDeviceEventsResponse],
    ) -> AsyncIterator[device_pb2.WatchDeviceEventsResponse]:
        events = await self._devices.watch(current_caller(), request.device_id)
        try:
            # Headers go out once subscribed: a client awaiting them knows it misses nothing after.
            await context.send_initial_metadata(())
            async for event in events:
                shown = self._presence.show(event.device) if event.device is not None else None
                yield device_pb2.WatchDeviceEventsResponse(
                    kind=EVENT_KIND_TO_PB[event.kind],
                    device_id=event.device_id,
                    time=convert.timestamp(event.time),
                    device=convert.shown_device(shown) if shown is not None else None,
                )
        finally:
            events.close()
