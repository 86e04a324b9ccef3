"""`make run`'s supervisor as a user runs it: everything up, every seed path answers, Ctrl-C stops all."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.net import http
from tests.support.stack import Stack, running_stack
from tests.unit.test_proto_contract import SEED_PATHS


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "data") as s:
        yield s


def test_run_serves_grpc_rest_and_the_broker_then_stops_cleanly(stack: Stack) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['GRPC_PORT']}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert listening(stack.ports["MQTT_PORT"])
    for (verb, template), _rpc in SEED_PATHS.items():
        path = template.replace("{device_id}", "ABC123").replace("{user_id}", "u1")
        status, body = http(verb.upper(), stack.rest + path, {} if verb == "post" else None)
        assert status != 404, f"{verb} {path} is not routed: {body}"
        assert isinstance(body, dict) and "code" in body and "message" in body

    assert stack.stop(signal.SIGINT) == 0
    for name, port in stack.ports.items():
        assert not listening(port), f"{name} {port} still listening after Ctrl-C"
    assert processes_mentioning(str(stack.data_dir)) == []


def test_sigterm_stops_everything_too(stack: Stack) -> None:
    assert stack.stop(signal.SIGTERM) == 0
    for port in stack.ports.values():
        assert not listening(port)
    assert processes_mentioning(str(stack.data_dir)) == []


def test_data_and_the_env_admin_survive_a_restart(tmp_path: Path) -> None:
    admin = {"ADMIN_EMAIL": "root@example.com", "ADMIN_PASSWORD": "root password 1"}
    with running_stack(tmp_path / "data", **admin) as first:
        body = {"username": "alice", "email": "alice@example.com", "password": "alice password"}
        assert http("POST", first.rest + "/api/auth/register", body)[0] == 200
    with running_stack(tmp_path / "data", **admin) as second:
        status, body = http(
            "POST", second.rest + "/api/auth/login", {"email": "root@example.com", "password": "root password 1"}
        )
        assert status == 200, body
        status, users = http("GET", second.rest + "/api/admin/users", token=body["token"])
        assert status == 200 and sorted(u["email"] for u in users["users"]) == ["alice@example.com", "root@example.com"]
        status, _ = http(
            "POST", second.rest + "/api/auth/login", {"email": "alice@example.com", "password": "alice password"}
        )
        assert status == 200


def test_killing_the_supervisor_outright_leaves_nothing_behind(stack: Stack) -> None:
    stack.process.kill()  # SIGKILL: no chance to clean up; PR_SET_PDEATHSIG must do it
    stack.process.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not processes_mentioning(str(stack.data_dir)) and not any(listening(p) for p in stack.ports.values()):
            return
        time.sleep(0.2)
    pytest.fail(f"left behind: {processes_mentioning(str(stack.data_dir))}")


def test_the_database_files_are_private_to_the_owner(stack: Stack) -> None:
    db = stack.data_dir / "control-plane.db"
    assert stack.data_dir.stat().st_mode & 0o777 == 0o700
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        assert path.stat().st_mode & 0o777 == 0o600, path
