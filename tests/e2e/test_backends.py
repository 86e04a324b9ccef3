"""The same server, unchanged, on both stores: data survives a restart on each."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest

from iot.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc
from server.app import ControlPlane
from tests.support.servers import make_settings

ADMIN = {"ADMIN_EMAIL": "root@example.com", "ADMIN_PASSWORD": "root password 1", "JWT_SECRET": "k" * 40}


async def login(port: int, email: str, password: str) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(email=email, password=password)
        )
    return reply.token


async def life_on(settings_env: dict[str, str], tmp_path: Path) -> None:
    # First life: an admin from the environment, one registered user.
    plane = ControlPlane(make_settings(tmp_path, **settings_env))
    await plane.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            await auth_pb2_grpc.AuthServiceStub(channel).Register(
                auth_pb2.RegisterRequest(username="alice", email="alice@example.com", password="alice password")
            )
    finally:
        await plane.stop(grace=1)
    # Second life, same configuration: both accounts are still there, the admin not duplicated.
    plane = ControlPlane(make_settings(tmp_path, **settings_env))
    await plane.start()
    try:
        assert await login(plane.port, "alice@example.com", "alice password")
        token = await login(plane.port, ADMIN["ADMIN_EMAIL"], ADMIN["ADMIN_PASSWORD"])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
            users = await admin_pb2_grpc.AdminServiceStub(channel).ListUsers(
                admin_pb2.ListUsersRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
        assert sorted(u.email for u in users.users) == ["alice@example.com", "root@example.com"]
    finally:
        await plane.stop(grace=1)


async def test_embedded_store_keeps_data_under_data_dir(tmp_path: Path) -> None:
    await life_on(ADMIN, tmp_path)
    assert (tmp_path / "control-plane.db").exists()


@pytest.mark.mongo
async def test_mongo_uri_runs_the_same_server(tmp_path: Path, secantus_uri: str) -> None:
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(secantus_uri)
    uri = urlunsplit(parts._replace(path=f"/{database}"))  # the database name travels in the URI
    await life_on({**ADMIN, "MONGO_URI": uri}, tmp_path)
    assert not (tmp_path / "control-plane.db").exists()
