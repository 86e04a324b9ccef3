"""REST through the real Envoy to the real gRPC server: paths, JSON names, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.launcher import validate
from server.app import ControlPlane
from tests.integration.test_grpc_server import scripted_ota
from tests.support.net import http
from tests.support.servers import make_settings, running_gateway, running_plane, user_token
from tests.unit.test_proto_contract import SEED_PATHS


def test_envoy_accepts_the_rendered_config() -> None:
    assert "OK" in validate(GatewayConfig(listen_port=3000, upstream_host="control-plane", upstream_port=50051))


@dataclass
class Rest:
    base: str
    token: str

    async def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, token: str | None = ""
    ) -> tuple[int, Any]:
        # urllib blocks; the gRPC server shares this event loop, so the call runs in a thread.
        bearer = self.token if token == "" else token
        return await asyncio.to_thread(http, method, self.base + path, body, bearer, raw)


@pytest.fixture
async def rest(tmp_path: Path) -> AsyncIterator[Rest]:
    plane = ControlPlane(make_settings(tmp_path), {"iot.v1.OtaService": scripted_ota()})
    async with running_plane(plane):
        token = await user_token(plane)
        with running_gateway(plane.port, tmp_path / "envoy") as gateway:
            yield Rest(f"http://127.0.0.1:{gateway.port}", token)


async def test_camel_case_json_comes_back(rest: Rest) -> None:
    status, body = await rest.call("GET", "/api/ota/ABC123/check")
    assert status == 200
    assert body["updateAvailable"] is True and body["latestVersion"] == "1.1.0"
    # Defaults are printed too: a client can rely on every field being there.
    assert body["currentBlocked"] is False


async def test_every_seed_path_reaches_its_rpc(rest: Rest) -> None:
    public = {"iot.v1.AuthService.Register": 400, "iot.v1.AuthService.Login": 401}
    for (verb, template), rpc in SEED_PATHS.items():
        path = template.replace("{device_id}", "ABC123").replace("{user_id}", "u1")
        # Without a token every protected path is refused by the access check: proof it was routed.
        status, body = await rest.call(verb.upper(), path, {} if verb == "post" else None, token=None)
        assert status == public.get(rpc, 401), f"{verb} {path}: {status} {body}"
        assert isinstance(body["code"], int) and body["message"]


async def test_unimplemented_rpc_is_501_json(rest: Rest) -> None:
    status, body = await rest.call("POST", "/api/ota/ABC123/start", {})
    assert (status, body["code"]) == (501, 12)
    assert "OtaService.StartUpdate is not implemented yet" in body["message"]


async def test_domain_errors_keep_their_message_and_http_status(rest: Rest) -> None:
    status, body = await rest.call("GET", "/api/ota/missing/check")
    assert (status, body["code"], body["message"]) == (404, 5, "device missing not found")
    status, body = await rest.call("GET", "/api/ota/throttled/check")
    assert status == 429
    assert body["details"][0]["retryDelay"] == "7s"
    status, body = await rest.call("GET", "/api/ota/crash/check")
    assert (status, body["message"]) == (500, "internal error")


async def test_unknown_paths_are_json_404(rest: Rest) -> None:
    for path in ("/api/nothing-here", "/", "/api/device/ABC/unknown"):
        status, body = await rest.call("GET", path)
        assert status == 404 and body["code"] == 5, (path, body)


async def test_bad_json_and_bad_enum_are_400(rest: Rest) -> None:
    status, body = await rest.call("POST", "/api/auth/login", raw=b"{not json")
    assert status == 400 and body["code"] == 3
    status, body = await rest.call("POST", "/api/device/ABC/led", {"state": "PURPLE"})
    assert status == 400 and "PURPLE" in body["message"]
