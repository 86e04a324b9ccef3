"""OtaService: check, start and follow a device's OTA jobs, thin over core.ota."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from iot.v1 import ota_pb2, ota_pb2_grpc
from server.api import convert
from server.api.interceptors import current_caller
from server.core.ota import OtaJobs


class OtaServicer(ota_pb2_grpc.OtaServiceServicer):
    def __init__(self, ota: OtaJobs) -> None:
        self._ota = ota

    async def CheckUpdate(
        self,
        request: ota_pb2.CheckUpdateRequest,
        context: ServicerContext[ota_pb2.CheckUpdateRequest, ota_pb2.CheckUpdateResponse],
    ) -> ota_pb2.CheckUpdateResponse:
        result = await self._ota.check(current_caller(), request.device_id)
        return ota_pb2.CheckUpdateResponse(
            update_available=result.update_available,
            latest_version=result.latest_version,
            current_version=result.current_version,
            current_blocked=result.current_blocked,
        )

    async def StartUpdate(
        self,
        request: ota_pb2.StartUpdateRequest,
        context: ServicerContext[ota_pb2.StartUpdateRequest, ota_pb2.StartUpdateResponse],
    ) -> ota_pb2.StartUpdateResponse:
        job = await self._ota.start_update_by_id(current_caller(), request.device_id, request.version.strip())
        return ota_pb2.StartUpdateResponse(job=convert.ota_job(job))

    async def ListOtaJobs(
        self,
        request: ota_pb2.ListOtaJobsRequest,
        context: ServicerContext[ota_pb2.ListOtaJobsRequest, ota_pb2.ListOtaJobsResponse],
    ) -> ota_pb2.ListOtaJobsResponse:
        page_request = convert.page_request(request.page_size, request.page_token)
        page = await self._ota.list(current_caller(), request.device_id, page_request)
        return ota_pb2.ListOtaJobsResponse(
            jobs=[convert.ota_job(j) for j in page.items], next_page_token=page.next_page_token
        )

    async def GetOtaJob(
        self,
        request: ota_pb2.GetOtaJobRequest,
        context: ServicerContext[ota_pb2.GetOtaJobRequest, ota_pb2.GetOtaJobResponse],
    ) -> ota_pb2.GetOtaJobResponse:
        job = await self._ota.get(current_caller(), request.device_id, request.job_id)
        return ota_pb2.GetOtaJobResponse(job=convert.ota_job(job))

    async def WatchOtaEvents(
        self,
        request: ota_pb2.WatchOtaEventsRequest,
        context: ServicerContext[ota_pb2.WatchOtaEventsRequest, ota_pb2.WatchOtaEventsResponse],
    ) -> AsyncIterator[ota_pb2.WatchOtaEventsResponse]:
        events = await self._ota.watch(current_caller(), request.device_id, request.rollout_id)
        try:
            # Headers go out once subscribed: a client awaiting them knows it misses nothing after.
            await context.send_initial_metadata(())
            async for event in events:
                yield ota_pb2.WatchOtaEventsResponse(job=convert.ota_job(event.job), time=convert.timestamp(event.time))
        finally:
            events.close()
