"""ReleaseService: the firmware catalog (S3 or the local store), thin over core.releases."""

from __future__ import annotations

from grpc.aio import ServicerContext

from iot.v1 import release_pb2, release_pb2_grpc
from server.api import convert
from server.api.interceptors import current_caller
from server.core.releases import Releases


class ReleaseServicer(release_pb2_grpc.ReleaseServiceServicer):
    def __init__(self, releases: Releases) -> None:
        self._releases = releases

    async def ListReleases(
        self,
        request: release_pb2.ListReleasesRequest,
        context: ServicerContext[release_pb2.ListReleasesRequest, release_pb2.ListReleasesResponse],
    ) -> release_pb2.ListReleasesResponse:
        page = await self._releases.list(request.platform, convert.page_request(request.page_size, request.page_token))
        return release_pb2.ListReleasesResponse(
            releases=[convert.release(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def GetRelease(
        self,
        request: release_pb2.GetReleaseRequest,
        context: ServicerContext[release_pb2.GetReleaseRequest, release_pb2.GetReleaseResponse],
    ) -> release_pb2.GetReleaseResponse:
        release = await self._releases.get(request.platform, request.version)
        return release_pb2.GetReleaseResponse(release=convert.release(release))

    async def SetReleaseBlocked(
        self,
        request: release_pb2.SetReleaseBlockedRequest,
        context: ServicerContext[release_pb2.SetReleaseBlockedRequest, release_pb2.SetReleaseBlockedResponse],
    ) -> release_pb2.SetReleaseBlockedResponse:
        # Like the seed's block calls: an absent `blocked` (an empty body) means "block".
        blocked = request.blocked if request.HasField("blocked") else True
        release = await self._releases.set_blocked(
            current_caller(), request.platform, request.version, blocked, request.reason
        )
        return release_pb2.SetReleaseBlockedResponse(release=convert.release(release))
