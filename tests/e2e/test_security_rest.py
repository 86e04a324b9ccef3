"""Attacks on the accounts and the REST front (issue 10), replayed against the real Envoy and
the real gRPC server: each test is the probe that found the hole, and the answer it must get."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

from iot.v1 import auth_pb2, auth_pb2_grpc
from server.app import ControlPlane
from tests.support.net import http
from tests.support.servers import make_settings, running_gateway, running_plane

JWT_SECRET = "a-security-test-secret-that-is-long-enough-0123456789"
PASSWORD = "correct horse battery"


@dataclass
class Front:
    base: str
    host: str
    port: int
    grpc_port: int
    plane: ControlPlane

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        # urllib blocks and the gRPC server shares this event loop: call from a thread.
        return await asyncio.to_thread(http, method, self.base + path, body, token)

    async def register(self, name: str, email: str = "") -> tuple[int, Any]:
        email = email or f"{name.lower().strip('._-')}-{len(name)}@example.com"
        return await self.call("POST", "/api/auth/register", {"username": name, "email": email, "password": PASSWORD})

    async def token(self, name: str) -> tuple[str, str]:
        """A new user's (token, userId)."""
        status, body = await self.register(name, f"{name}@example.com")
        assert status == 200, body
        status, login = await self.call(
            "POST", "/api/auth/login", {"email": f"{name}@example.com", "password": PASSWORD}
        )
        assert status == 200, login
        return str(login["token"]), str(body["user"]["userId"])

    async def grpc_login(self, email: str, password: str, forwarded_for: str) -> grpc.StatusCode:
        """Log in over gRPC as Envoy would forward it: from loopback, with X-Forwarded-For."""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            try:
                await stub.Login(
                    auth_pb2.LoginRequest(email=email, password=password),
                    metadata=(("x-forwarded-for", forwarded_for),),
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK


@pytest.fixture(scope="module")
async def front(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Front]:
    tmp: Path = tmp_path_factory.mktemp("security")
    plane = ControlPlane(make_settings(tmp, JWT_SECRET=JWT_SECRET))
    async with running_plane(plane):
        with running_gateway(plane.port, tmp / "envoy") as gateway:
            yield Front(f"http://127.0.0.1:{gateway.port}", "127.0.0.1", gateway.port, plane.port, plane)


def post_streaming(host: str, port: int, path: str, size: int) -> tuple[int, Any]:
    """POST a body of `size` bytes the way curl does: keep reading while sending, so an early
    answer (413 before the body is through) is seen rather than lost in a reset."""
    with socket.create_connection((host, port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk, sent, reply = b"a" * 65536, 0, b""
        while sent < size:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sent += sock.send(chunk[: size - sent])
            except OSError:
                break
        sock.settimeout(10)
        while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < _content_length(reply):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    head_text, _, body = reply.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    return status, json.loads(body[: _content_length(reply)])


def _content_length(reply: bytes) -> int:
    for line in reply.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


# --- item 14: REST oddities -------------------------------------------------------------------


async def test_an_unknown_query_parameter_is_ignored(front: Front) -> None:
    token, _ = await front.token("queryuser")
    status, body = await front.call("GET", "/api/device?utm_source=mail&_=1733", token=token)
    assert status == 200 and body["devices"] == [], body
    # A declared parameter still works beside an unknown one.
    status, body = await front.call("GET", "/api/device?pageSize=1&cachebuster=x", token=token)
    assert status == 200, body


async def test_a_10_mb_body_is_413_with_json(front: Front) -> None:
    status, body = await asyncio.to_thread(post_streaming, front.host, front.port, "/api/auth/login", 10_000_000)
    assert status == 413, body
    assert isinstance(body["code"], int) and body["message"]


async def test_an_8000_character_id_is_a_plain_not_found(front: Front) -> None:
    token, _ = await front.token("longiduser")
    for length in (8_000, 12_000, 30_000):
        for path in (f"/api/device/{'A' * length}", f"/api/ota/{'A' * length}/check"):
            # gRPC's metadata limits refused these at random; ten tries each would have caught it.
            for _ in range(5):
                status, body = await front.call("GET", path, token=token)
                assert status == 404 and body["code"] == 5, (length, path, status, str(body)[:200])
                assert len(body["message"]) <= 512
    # Beyond what Envoy accepts, the answer is still JSON and not a retry code.
    status, body = await front.call("GET", f"/api/device/{'A' * 40_000}", token=token)
    assert status == 431 and isinstance(body["code"], int), body


async def test_a_signed_token_with_a_string_or_absurd_exp_is_401(front: Front) -> None:
    _, user_id = await front.token("expuser")
    now = datetime.now(UTC)
    claims = {
        "sub": user_id,
        "role": "USER",
        "jti": "j",
        "iss": "esp32-fleet-control-plane",
        "aud": "esp32-fleet-api",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    for field, value in (
        ("exp", str(claims["exp"])),
        ("iat", str(claims["iat"])),
        ("exp", 10**12),  # the year 33658: PyJWT accepts it, datetime does not
        ("iat", True),
    ):
        token = jwt.encode(dict(claims, **{field: value}), JWT_SECRET, algorithm="HS256")
        status, body = await front.call("GET", "/api/auth/me", token=token)
        assert status == 401 and body["message"] == "invalid token", (field, value, status, body)
    good = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    assert (await front.call("GET", "/api/auth/me", token=good))[0] == 200


async def test_usernames_that_pose_as_another_are_refused(front: Front) -> None:
    status, body = await front.register("Root")
    assert status == 200 and body["user"]["username"] == "root", body
    for spoof in ("ROOT", "root", "Ｒｏｏｔ"):  # noqa: RUF001 - full-width letters are the point
        status, body = await front.register(spoof, f"spoof{len(spoof)}{ord(spoof[0])}@example.com")
        assert status == 409 and "username" in body["message"], (spoof, body)
    for confusable in ("root.", "root_", "root-", "ro..ot", "ro._ot", ".root"):
        status, body = await front.register(confusable, f"c{abs(hash(confusable))}@example.com")
        assert status == 400 and "username" in body["message"], (confusable, body)
    # Separators between letters stay allowed: they name different people.
    status, body = await front.register("ro.ot", "roodot@example.com")
    assert status == 200 and body["user"]["username"] == "ro.ot", body


# --- item 3: failed logins cannot lock the owner out ------------------------------------------


async def test_guesses_from_one_address_do_not_lock_the_owner_out(front: Front) -> None:
    await front.token("olga")
    attacker = [await front.grpc_login("olga@example.com", "wrong guess", "203.0.113.7") for _ in range(7)]
    assert attacker[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert attacker[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The attacker's address stays throttled even with the right password...
    assert await front.grpc_login("olga@example.com", PASSWORD, "203.0.113.7") == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ...but the owner, from an address never seen before, gets in.
    assert await front.grpc_login("olga@example.com", PASSWORD, "198.51.100.20") == grpc.StatusCode.OK


async def test_guesses_from_many_addresses_do_not_lock_out_a_known_address(front: Front) -> None:
    await front.token("pavel")
    assert await front.grpc_login("pavel@example.com", PASSWORD, "198.51.100.30") == grpc.StatusCode.OK
    codes = [await front.grpc_login("pavel@example.com", "wrong guess", f"203.0.113.{i}") for i in range(14)]
    # Brute force stays infeasible: the account's shared budget for strangers runs out...
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert await front.grpc_login("pavel@example.com", PASSWORD, "192.0.2.99") == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ...while the owner's own address is never locked out by others' failures.
    assert await front.grpc_login("pavel@example.com", PASSWORD, "198.51.100.30") == grpc.StatusCode.OK


# --- item 4: X-Forwarded-For is believed only from the configured front ------------------------


def spray_rest(base: str, count: int) -> list[int]:
    """Wrong logins for `count` different accounts, each claiming a new X-Forwarded-For."""
    statuses = []
    for i in range(count):
        request = urllib.request.Request(
            base + "/api/auth/login",
            data=json.dumps({"email": f"victim{i}@example.com", "password": "wrong guess"}).encode(),
            method="POST",
            headers={"content-type": "application/json", "x-forwarded-for": f"198.18.{i // 250}.{i % 250 + 1}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            with exc:
                statuses.append(exc.code)
    return statuses


async def test_a_direct_grpc_caller_cannot_claim_another_address(tmp_path: Path) -> None:
    # The front is elsewhere (192.0.2.1): this test's loopback connection is an ordinary client.
    plane = ControlPlane(make_settings(tmp_path, JWT_SECRET=JWT_SECRET, TRUSTED_PROXIES="192.0.2.1"))
    async with running_plane(plane):
        front = Front("", "127.0.0.1", 0, plane.port, plane)
        codes = [
            await front.grpc_login(f"victim{i}@example.com", "wrong guess", f"198.18.0.{i + 1}") for i in range(23)
        ]
    # Password spraying from one address is throttled after 20, whatever addresses it claims.
    assert codes[:20] == [grpc.StatusCode.UNAUTHENTICATED] * 20
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_rest_client_cannot_claim_another_address_through_envoy(tmp_path: Path) -> None:
    plane = ControlPlane(make_settings(tmp_path, JWT_SECRET=JWT_SECRET))
    async with running_plane(plane):
        with running_gateway(plane.port, tmp_path / "envoy") as gateway:
            statuses = await asyncio.to_thread(spray_rest, f"http://127.0.0.1:{gateway.port}", 23)
    # Envoy appends the real peer; the server believes only that last hop.
    assert statuses[:20] == [401] * 20 and statuses[-1] == 429


# --- item 11: production refuses a guessable JWT_SECRET --------------------------------------


def test_the_server_refuses_to_start_in_production_with_a_low_entropy_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "ENV", "NODE_ENV")}
    env.update(ENV="production", DATA_DIR=str(tmp_path), GRPC_HOST="127.0.0.1", GRPC_PORT="0")
    for weak in ("a" * 32, "ab" * 20, "abcdefghijklmnopqrstuvwxyz0123456789"):
        result = subprocess.run(
            [sys.executable, "-m", "server"],
            env=dict(env, JWT_SECRET=weak),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "JWT_SECRET is too predictable" in result.stderr and weak not in result.stderr
    strong = subprocess.run(
        [sys.executable, "-m", "server", "check-config"],
        env=dict(env, JWT_SECRET="q8Vt3mZpL0xR7cWn2bJy5kHd9sFg4aTe"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert strong.returncode == 0, strong.stderr
