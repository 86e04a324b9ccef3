"""Users, auth and admin over REST through the real Envoy, and over gRPC: as a client sees them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iot.v1 import auth_pb2, auth_pb2_grpc
from server.app import ControlPlane
from tests.support.net import http
from tests.support.servers import make_settings, running_gateway, running_plane

JWT_SECRET = "an-e2e-test-secret-that-is-long-enough-0123456789"
ADMIN = {"email": "root@example.com", "password": "root password 1"}
PASSWORD = "correct horse battery"


@dataclass
class Api:
    base: str
    grpc_port: int

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        # urllib blocks and the gRPC server shares this event loop: call from a thread.
        return await asyncio.to_thread(http, method, self.base + path, body, token)

    async def register(self, name: str, password: str = PASSWORD) -> dict[str, Any]:
        status, body = await self.call(
            "POST", "/api/auth/register", {"username": name, "email": f"{name}@example.com", "password": password}
        )
        assert status == 200, body
        return dict(body["user"])

    async def login(self, email: str, password: str = PASSWORD) -> str:
        status, body = await self.call("POST", "/api/auth/login", {"email": email, "password": password})
        assert status == 200, body
        return str(body["token"])


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("auth")
    env = {"JWT_SECRET": JWT_SECRET, "ADMIN_EMAIL": ADMIN["email"], "ADMIN_PASSWORD": ADMIN["password"]}
    plane = ControlPlane(make_settings(tmp, **env))
    async with running_plane(plane):
        with running_gateway(plane.port, tmp / "envoy") as gateway:
            yield Api(f"http://127.0.0.1:{gateway.port}", plane.port)


@pytest.fixture(scope="module")
async def admin_token(api: Api) -> str:
    return await api.login(ADMIN["email"], ADMIN["password"])


async def test_register_login_and_whoami(api: Api) -> None:
    user = await api.register("alice")
    assert user["username"] == "alice" and user["email"] == "alice@example.com" and user["role"] == "USER"
    assert not {"password", "passwordHash"} & set(user)
    status, body = await api.call("POST", "/api/auth/login", {"email": "Alice@Example.com", "password": PASSWORD})
    assert status == 200 and body["expiresIn"] == 3600  # a JSON number, as clients expect
    token = body["token"]
    status, body = await api.call("GET", "/api/auth/me", token=token)
    assert status == 200 and body["user"]["userId"] == user["userId"]


async def test_duplicates_are_409_naming_the_field(api: Api) -> None:
    await api.register("bob")
    status, body = await api.call(
        "POST", "/api/auth/register", {"username": "bob2", "email": "BOB@example.com", "password": PASSWORD}
    )
    assert status == 409 and body["message"] == "email is already registered"
    assert body["details"][0]["fieldViolations"][0]["field"] == "email"
    status, body = await api.call(
        "POST", "/api/auth/register", {"username": "bob", "email": "bob@other.example", "password": PASSWORD}
    )
    assert status == 409 and "username" in body["message"]


async def test_password_policy_is_400_with_the_reason(api: Api) -> None:
    status, body = await api.call(
        "POST", "/api/auth/register", {"username": "carl", "email": "carl@example.com", "password": "short"}
    )
    assert status == 400 and "at least 8 characters" in body["message"]


async def test_wrong_password_and_unknown_email_look_the_same(api: Api) -> None:
    await api.register("dora")
    wrong = await api.call("POST", "/api/auth/login", {"email": "dora@example.com", "password": "nope nope"})
    unknown = await api.call("POST", "/api/auth/login", {"email": "ghost@example.com", "password": "nope nope"})
    assert wrong == unknown
    assert wrong[0] == 401 and wrong[1]["message"] == "invalid email or password"


async def test_bad_tokens_are_401(api: Api) -> None:
    user = await api.register("eve")
    now = datetime.now(UTC)
    claims = {
        "sub": user["userId"],
        "role": "admin",
        "jti": "x",
        "iss": "esp32-fleet-control-plane",
        "aud": "esp32-fleet-api",
        "iat": int((now - timedelta(hours=2)).timestamp()),
        "exp": int((now - timedelta(hours=1)).timestamp()),
    }
    expired = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    fresh = dict(claims, exp=int((now + timedelta(hours=1)).timestamp()))
    none_alg = jwt.encode(fresh, "", algorithm="none")
    forged = jwt.encode(fresh, "a different secret that is long enough!", algorithm="HS256")
    valid = await api.login("eve@example.com")
    tampered = valid[:-4] + ("AAAA" if not valid.endswith("AAAA") else "BBBB")
    for token, what in ((expired, "expired"), (none_alg, "alg none"), (forged, "wrong key"), (tampered, "tampered")):
        status, body = await api.call("GET", "/api/auth/me", token=token)
        assert status == 401, (what, body)
    status, body = await api.call("GET", "/api/device")
    assert status == 401 and "Bearer" in body["message"]


async def test_users_are_refused_admin_endpoints(api: Api) -> None:
    await api.register("fred")
    token = await api.login("fred@example.com")
    for method, path in (
        ("GET", "/api/admin/users"),
        ("GET", "/api/admin/devices"),
        ("GET", "/api/admin/activity"),
        ("POST", "/api/admin/user/someone/block"),
    ):
        status, body = await api.call(method, path, {} if method == "POST" else None, token=token)
        assert status == 403 and body["message"] == "admin role required", (path, body)


async def test_admin_lists_users_paginated_and_filtered(api: Api, admin_token: str) -> None:
    for name in ("gina", "hank", "ivan"):
        await api.register(name)
    seen: list[str] = []
    token = ""
    while True:
        status, body = await api.call("GET", f"/api/admin/users?pageSize=2&pageToken={token}", token=admin_token)
        assert status == 200 and len(body["users"]) <= 2
        seen += [u["email"] for u in body["users"]]
        token = body["nextPageToken"]
        if not token:
            break
    assert len(seen) == len(set(seen)) and {"gina@example.com", "root@example.com"} <= set(seen)
    assert not any("password" in json.dumps(u).lower() for u in body["users"])
    status, body = await api.call("GET", "/api/admin/users?emailPrefix=GIN", token=admin_token)
    assert [u["email"] for u in body["users"]] == ["gina@example.com"]
    status, body = await api.call("GET", "/api/admin/users?role=ADMIN", token=admin_token)
    assert [u["email"] for u in body["users"]] == ["root@example.com"]
    status, body = await api.call("GET", "/api/admin/users?pageToken=garbage", token=admin_token)
    assert status == 400


async def test_blocking_a_user_cuts_off_their_existing_token(api: Api, admin_token: str) -> None:
    user = await api.register("judy")
    token = await api.login("judy@example.com")
    status, body = await api.call("POST", f"/api/admin/user/{user['userId']}/block", token=admin_token)
    assert status == 200 and body["user"]["blocked"] is True  # no body means block
    status, _ = await api.call("POST", f"/api/admin/user/{user['userId']}/block", {}, token=admin_token)
    assert status == 200  # idempotent
    status, body = await api.call("GET", "/api/auth/me", token=token)
    assert status == 403 and body["message"] == "account is blocked"
    status, body = await api.call("POST", "/api/auth/login", {"email": "judy@example.com", "password": PASSWORD})
    assert status == 403
    status, body = await api.call(
        "POST", f"/api/admin/user/{user['userId']}/block", {"blocked": False}, token=admin_token
    )
    assert status == 200 and body["user"]["blocked"] is False
    assert (await api.call("GET", "/api/auth/me", token=token))[0] == 200
    status, body = await api.call("POST", "/api/admin/user/no-such-user/block", token=admin_token)
    assert status == 404


async def test_the_last_admin_cannot_be_blocked(api: Api, admin_token: str) -> None:
    status, body = await api.call("GET", "/api/auth/me", token=admin_token)
    admin_id = body["user"]["userId"]
    status, body = await api.call("POST", f"/api/admin/user/{admin_id}/block", token=admin_token)
    assert status == 400 and "last active admin" in body["message"]


async def test_activity_log_records_and_filters(api: Api, admin_token: str) -> None:
    user = await api.register("kate")
    await api.call("POST", "/api/auth/login", {"email": "kate@example.com", "password": "wrong wrong"})
    await api.call("POST", f"/api/admin/user/{user['userId']}/block", token=admin_token)
    status, body = await api.call("GET", f"/api/admin/activity?target={user['userId']}", token=admin_token)
    assert status == 200
    actions = [e["action"] for e in body["entries"]]
    assert actions[0] == "user.block" and "user.register" in actions  # newest first
    status, body = await api.call("GET", "/api/admin/activity?action=user.login_failed", token=admin_token)
    assert any(e["target"] == "kate@example.com" for e in body["entries"])
    since = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = await api.call("GET", f"/api/admin/activity?since={since}", token=admin_token)
    assert status == 200 and body["entries"] == []


async def test_repeated_failures_are_throttled_with_a_retry_hint(api: Api) -> None:
    await api.register("leo")
    statuses = []
    for _ in range(7):
        status, body = await api.call("POST", "/api/auth/login", {"email": "leo@example.com", "password": "bad pass"})
        statuses.append(status)
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429
    assert body["details"][0]["retryDelay"].endswith("s")
    # Even the right password waits: the point is to slow guessing down.
    status, _ = await api.call("POST", "/api/auth/login", {"email": "leo@example.com", "password": PASSWORD})
    assert status == 429


async def test_concurrent_registrations_of_one_email_have_one_winner(api: Api) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        calls = [
            stub.Register(auth_pb2.RegisterRequest(username=f"racer{i}", email="race@example.com", password=PASSWORD))
            for i in range(8)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
    winners = [r for r in results if isinstance(r, auth_pb2.RegisterResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 7
    assert all(e.code() == grpc.StatusCode.ALREADY_EXISTS for e in losers)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["username", "email", "password", "x"]), json_values, max_size=4).map(
        lambda v: json.dumps(v).encode()
    ),
)


async def test_garbage_bodies_are_always_4xx(api: Api) -> None:
    def run() -> None:
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(path=st.sampled_from(["/api/auth/register", "/api/auth/login"]), raw=bodies)
        def check(path: str, raw: bytes) -> None:
            status, body = http("POST", api.base + path, raw=raw)
            assert 400 <= status < 500, (path, raw, status, body)

        check()

    await asyncio.to_thread(run)
