"""Start the real control plane (in-process) and the real Envoy in front of it, for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.launcher import Gateway
from server.app import ControlPlane
from server.settings import Settings


def make_settings(data_dir: Path, **overrides: str) -> Settings:
    env = {
        "ENV": "test",
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": "0",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        # The local firmware store's download endpoint, on a free port like everything else.
        "FIRMWARE_HTTP_PORT": "0",
    }
    env.update(overrides)
    return Settings.from_env(env)


@asynccontextmanager
async def running_plane(plane: ControlPlane) -> AsyncIterator[ControlPlane]:
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop(grace=1)


@contextmanager
def running_gateway(grpc_port: int, workdir: Path) -> Iterator[Gateway]:
    gateway = Gateway(
        GatewayConfig(listen_port=0, listen_address="127.0.0.1", upstream_host="127.0.0.1", upstream_port=grpc_port),
        workdir=workdir,
    )
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


async def user_token(plane: ControlPlane, name: str = "alice", admin: bool = False) -> str:
    """Register (through core) and log in a user of the running plane; returns a bearer token."""
    from server.core.model import Role

    email = f"{name}@example.com"
    await plane.users.register(name, email, "correct horse battery", role=Role.ADMIN if admin else Role.USER)
    return (await plane.users.login(email, "correct horse battery")).token
