"""RolloutService: staged rollouts, thin over core.rollouts (admins only, by the access policy)."""

from __future__ import annotations

from grpc.aio import ServicerContext

from iot.v1 import rollout_pb2, rollout_pb2_grpc
from server.api import convert
from server.api.interceptors import current_caller
from server.core.rollout_rules import validate_request
from server.core.rollouts import Rollouts


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, rollouts: Rollouts) -> None:
        self._rollouts = rollouts

    async def CreateRollout(
        self,
        request: rollout_pb2.CreateRolloutRequest,
        context: ServicerContext[rollout_pb2.CreateRolloutRequest, rollout_pb2.CreateRolloutResponse],
    ) -> rollout_pb2.CreateRolloutResponse:
        wanted = validate_request(
            request.platform, request.version, request.batch_size, request.max_failure_ratio, request.from_version
        )
        view = await self._rollouts.create(current_caller(), wanted)
        return rollout_pb2.CreateRolloutResponse(rollout=convert.rollout(view))

    async def ListRollouts(
        self,
        request: rollout_pb2.ListRolloutsRequest,
        context: ServicerContext[rollout_pb2.ListRolloutsRequest, rollout_pb2.ListRolloutsResponse],
    ) -> rollout_pb2.ListRolloutsResponse:
        page = await self._rollouts.list(current_caller(), convert.page_request(request.page_size, request.page_token))
        return rollout_pb2.ListRolloutsResponse(
            rollouts=[convert.rollout(v) for v in page.items], next_page_token=page.next_page_token
        )

    async def GetRollout(
        self,
        request: rollout_pb2.GetRolloutRequest,
        context: ServicerContext[rollout_pb2.GetRolloutRequest, rollout_pb2.GetRolloutResponse],
    ) -> rollout_pb2.GetRolloutResponse:
        view = await self._rollouts.get(current_caller(), request.rollout_id)
        return rollout_pb2.GetRolloutResponse(rollout=convert.rollout(view))

    async def PauseRollout(
        self,
        request: rollout_pb2.PauseRolloutRequest,
        context: ServicerContext[rollout_pb2.PauseRolloutRequest, rollout_pb2.PauseRolloutResponse],
    ) -> rollout_pb2.PauseRolloutResponse:
        view = await self._rollouts.pause(current_caller(), request.rollout_id)
        return rollout_pb2.PauseRolloutResponse(rollout=convert.rollout(view))

    async def ResumeRollout(
        self,
        request: rollout_pb2.ResumeRolloutRequest,
        context: ServicerContext[rollout_pb2.ResumeRolloutRequest, rollout_pb2.ResumeRolloutResponse],
    ) -> rollout_pb2.ResumeRolloutResponse:
        view = await self._rollouts.resume(current_caller(), request.rollout_id)
        return rollout_pb2.ResumeRolloutResponse(rollout=convert.rollout(view))

    async def AbortRollout(
        self,
        request: rollout_pb2.AbortRolloutRequest,
        context: ServicerContext[rollout_pb2.AbortRolloutRequest, rollout_pb2.AbortRolloutResponse],
    ) -> rollout_pb2.AbortRolloutResponse:
        view = await self._rollouts.abort(current_caller(), request.rollout_id)
        return rollout_pb2.AbortRolloutResponse(rollout=convert.rollout(view))
