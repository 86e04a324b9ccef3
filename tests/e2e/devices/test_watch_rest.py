"""The device watch stream over REST: Envoy transcodes the server stream into a chunked JSON array."""

from __future__ import annotations

import asyncio
import http.client
import time
import uuid
from urllib.parse import urlsplit

from tests.e2e.devices.conftest import RestFleet


def read_stream(base: str, token: str, until: str, within: float) -> str:
    """Read GET /api/events/devices until `until` appears in the body (or time runs out)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=within)
    try:
        conn.request("GET", "/api/events/devices", headers={"authorization": f"Bearer {token}"})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        body, deadline = "", time.monotonic() + within
        while until not in body and time.monotonic() < deadline:
            chunk = response.read1(4096)
            if not chunk:
                break
            body += chunk.decode()
        return body
    finally:
        conn.close()


async def test_a_user_streams_their_own_device_events_and_nobody_elses(rest_fleet: RestFleet) -> None:
    alice, bob = await rest_fleet.user(), await rest_fleet.user()
    mine, theirs = f"esp-{uuid.uuid4().hex[:8]}", f"esp-{uuid.uuid4().hex[:8]}"
    _, a = await rest_fleet.call("POST", "/api/device/register", alice, {"deviceId": mine, "name": "Mine"})
    _, b = await rest_fleet.call("POST", "/api/device/register", bob, {"deviceId": theirs, "name": "Theirs"})
    device_a, device_b = await rest_fleet.connect(a["mqtt"]), await rest_fleet.connect(b["mqtt"])

    expected = f'"deviceId":"{mine}"'
    reader = asyncio.ensure_future(asyncio.to_thread(read_stream, rest_fleet.base, alice, expected, 10))
    # The stream subscribes when the call arrives, which the client cannot observe: keep both
    # devices talking until alice's event has come through.
    while not reader.done():
        await rest_fleet.heartbeat(device_b, "2.0.0")
        await rest_fleet.heartbeat(device_a, "1.0.0")
        await asyncio.sleep(0.2)
    body = await reader
    assert body.startswith("[") and expected in body, body
    assert '"kind":"DEVICE_HEALTH"' in body and '"firmwareVersion":"1.0.0"' in body
    assert theirs not in body  # tenant isolation holds on the stream too
