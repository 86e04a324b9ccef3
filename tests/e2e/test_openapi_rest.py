"""The OpenAPI document and its reference page, served by the real Envoy, describe what it serves."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from server.app import ControlPlane
from tests.support.servers import make_settings, running_gateway, running_plane, user_token

GENERATED = Path(__file__).resolve().parents[2] / "gen" / "openapi"


def fetch(url: str, token: str | None = None) -> tuple[int, str, bytes]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return response.status, response.headers.get("content-type", ""), response.read()


async def test_document_and_reference_are_served_and_match_a_real_answer(tmp_path: Path) -> None:
    plane = ControlPlane(make_settings(tmp_path))
    async with running_plane(plane):
        token = await user_token(plane)
        with running_gateway(plane.port, tmp_path / "envoy") as gateway:
            base = f"http://127.0.0.1:{gateway.port}"
            status, kind, body = await asyncio.to_thread(fetch, base + "/api/openapi.json")
            assert status == 200 and kind == "application/json"
            document = json.loads(body)
            assert document == json.loads((GENERATED / "openapi.json").read_text())

            status, kind, page = await asyncio.to_thread(fetch, base + "/api/docs")
            assert status == 200 and kind.startswith("text/html")
            assert b"/api/ota/{deviceId}/check" in page and b"<script" not in page

            # A real answer carries exactly the fields the document says are always there.
            status, _, answer = await asyncio.to_thread(fetch, base + "/api/device", token)
            listed = document["components"]["schemas"]["ListDevicesResponse"]
            assert status == 200 and set(json.loads(answer)) == set(listed["required"])
