"""REST through the real Envoy to the real gRPC server: paths, JSON names, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.launcher import validate
from server.app import ControlPlane
from tests.integration.test_grpc_server import scripted_ota
from tests.support.net import http
from tests.support.servers import make_settings, running_gateway, running_plane
from tests.unit.test_proto_contract import SEED_PATHS


def test_envoy_accepts_the_rendered_config() -> None:
    assert "OK" in validate(GatewayConfig(listen_port=3000, upstream_host="control-plane", upstream_port=50051))


@pytest.fixture
async def rest(tmp_path: Path) -> AsyncIterator[str]:
    plane = ControlPlane(make_settings(tmp_path), {"iot.v1.OtaService": scripted_ota()})
    async with running_plane(plane):
        with running_gateway(plane.port, tmp_path / "envoy") as gateway:
            yield f"http://127.0.0.1:{gateway.port}"


async def call(method: str, url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    # urllib blocks; the gRPC server shares this event loop, so the call runs in a thread.
    return await asyncio.to_thread(http, method, url, body, None, raw)


async def test_camel_case_json_comes_back(rest: str) -> None:
    status, body = await call("GET", f"{rest}/api/ota/ABC123/check")
    assert status == 200
    assert body["updateAvailable"] is True and body["latestVersion"] == "1.1.0"
    # Defaults are printed too: a client can rely on every field being there.
    assert body["currentBlocked"] is False


async def test_every_seed_path_reaches_its_rpc(rest: str) -> None:
    for (verb, template), rpc in SEED_PATHS.items():
        if rpc.startswith("iot.v1.OtaService.CheckUpdate"):
            continue
        path = template.replace("{device_id}", "ABC123").replace("{user_id}", "u1")
        status, body = await call(verb.upper(), rest + path, {} if verb == "post" else None)
        assert status == 501, f"{verb} {path}: {status} {body}"
        assert body["code"] == 12 and rpc.rsplit(".", 1)[1] in body["message"]


async def test_domain_errors_keep_their_message_and_http_status(rest: str) -> None:
    status, body = await call("GET", f"{rest}/api/ota/missing/check")
    assert (status, body["code"], body["message"]) == (404, 5, "device missing not found")
    status, body = await call("GET", f"{rest}/api/ota/throttled/check")
    assert status == 429
    assert body["details"][0]["retryDelay"] == "7s"
    status, body = await call("GET", f"{rest}/api/ota/crash/check")
    assert (status, body["message"]) == (500, "internal error")


async def test_unknown_paths_are_json_404(rest: str) -> None:
    for path in ("/api/nothing-here", "/", "/api/device/ABC/unknown"):
        status, body = await call("GET", rest + path)
        assert status == 404 and body["code"] == 5, (path, body)


async def test_bad_json_and_bad_enum_are_400(rest: str) -> None:
    status, body = await call("POST", f"{rest}/api/auth/login", raw=b"{not json")
    assert status == 400 and body["code"] == 3
    status, body = await call("POST", f"{rest}/api/device/ABC/led", {"state": "PURPLE"})
    assert status == 400 and "PURPLE" in body["message"]
