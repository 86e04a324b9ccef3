"""DashboardService: the fleet overview in one call, thin over core.dashboard."""

from __future__ import annotations

from grpc.aio import ServicerContext

from iot.v1 import dashboard_pb2, dashboard_pb2_grpc
from server.api import convert
from server.api.interceptors import current_caller
from server.core.dashboard import Dashboard


class DashboardServicer(dashboard_pb2_grpc.DashboardServiceServicer):
    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = dashboard

    async def GetDashboard(
        self,
        request: dashboard_pb2.GetDashboardRequest,
        context: ServicerContext[dashboard_pb2.GetDashboardRequest, dashboard_pb2.GetDashboardResponse],
    ) -> dashboard_pb2.GetDashboardResponse:
        view = await self._dashboard.view(current_caller(), convert.page_request(request.page_size, request.page_token))
        t = view.totals
        totals = dashboard_pb2.DashboardTotals(
            devices=t.devices,
            online=t.online,
            offline=t.offline,
            blocked=t.blocked,
            by_firmware=t.by_firmware,
            by_ota_status=view.by_ota_status,
            presence_known=view.presence_known,
        )
        return dashboard_pb2.GetDashboardResponse(
            devices=[convert.shown_device(s, view.ota_status.get(s.device.device_id)) for s in view.devices.items],
            totals=totals,
            next_page_token=view.devices.next_page_token,
        )
