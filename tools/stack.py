"""`make run`: the whole product on one machine, stopped as one.

Starts, in order: a local Mosquitto with the project's config (unless MQTT_URL/MQTT_WS_URL
names a broker), the control plane (`python -m server`), and Envoy in front of it. Ctrl-C or
SIGTERM stops all of them in reverse order. Every child is also tied to this process with
PR_SET_PDEATHSIG, so even if this supervisor is killed outright nothing is left behind.

Ports and places come from the environment: PORT (REST, 3000), GRPC_PORT (50051), MQTT_PORT
(1883, the local broker), FIRMWARE_HTTP_PORT (3001, firmware downloads of the local firmware
store, when S3_BUCKET is unset), DATA_DIR (./data); two stacks with different values run side
by side.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GatewayConfig
from gateway.launcher import Gateway, GatewayError

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: deliver SIGTERM to this process when its parent exits (used as preexec_fn)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def say(message: str) -> None:
    print(f"[make run] {message}", file=sys.stderr, flush=True)


def broker_credentials(path: Path) -> dict[str, str]:
    """Local-broker secrets, made once and kept (mode 0600) so restarts keep the same accounts."""
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    creds = {
        "admin_user": "admin",
        "admin_password": secrets.token_urlsafe(24),
        "backend_user": "backend",
        "backend_password": secrets.token_urlsafe(24),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle)
    return creds


def wait_serving(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the control plane exited with {process.returncode} (its log is above)")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the control plane did not report SERVING on :{port} within {timeout:g}s")


class Stack:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.data_dir = Path(env.get("DATA_DIR") or "data").resolve()
        self.rest_port = int(env.get("PORT") or 3000)
        self.grpc_port = int(env.get("GRPC_PORT") or 50051)
        self.mqtt_port = int(env.get("MQTT_PORT") or 1883)
        self.firmware_port = int(env.get("FIRMWARE_HTTP_PORT") or 3001)
        self.stoppers: list[tuple[str, object]] = []
        self.server: subprocess.Popen[bytes] | None = None
        self.gateway: Gateway | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server_env = dict(self.env, DATA_DIR=str(self.data_dir), GRPC_PORT=str(self.grpc_port))
        if not self.env.get("S3_BUCKET"):
            # The local firmware store: the control plane serves its signed download URLs.
            server_env["FIRMWARE_HTTP_PORT"] = str(self.firmware_port)
        if self.env.get("MQTT_URL") or self.env.get("MQTT_WS_URL"):
            say(f"using the configured broker {self.env.get('MQTT_URL') or self.env.get('MQTT_WS_URL')}")
        else:
            from tools.mosquitto import start_broker

            creds = broker_credentials(self.data_dir / "mosquitto" / "credentials.json")
            broker = start_broker(
                port=self.mqtt_port,
                data_dir=self.data_dir / "mosquitto",
                admin_user=creds["admin_user"],
                admin_password=creds["admin_password"],
                backend_user=creds["backend_user"],
                backend_password=creds["backend_password"],
                preexec_fn=die_with_parent,
            )
            self.stoppers.append(("mosquitto", broker))
            server_env.update(
                MQTT_URL=f"mqtt://127.0.0.1:{self.mqtt_port}",
                MQTT_USER=creds["backend_user"],
                MQTT_PASS=creds["backend_password"],
            )
            say(f"mosquitto on 127.0.0.1:{self.mqtt_port} (data in {self.data_dir / 'mosquitto'})")

        self.server = subprocess.Popen(
            [sys.executable, "-m", "server"],
            env=server_env,
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
        # Every child is forked before this process makes its first gRPC call (the health wait
        # below): gRPC's fork handlers abort a child forked while its poller threads run.
        self.gateway = Gateway(
            GatewayConfig(listen_port=self.rest_port, upstream_host="127.0.0.1", upstream_port=self.grpc_port),
            workdir=self.data_dir / "envoy",
            preexec_fn=die_with_parent,
        )
        self.gateway.start()
        wait_serving(self.grpc_port, self.server)
        say(f"control plane gRPC on :{self.grpc_port} (health SERVING, reflection on)")
        if self.env.get("S3_BUCKET"):
            say(f"firmware from s3://{self.env['S3_BUCKET']} (presigned URLs)")
        else:
            firmware_dir = self.env.get("FIRMWARE_DIR") or str(self.data_dir / "firmware")
            say(f"firmware downloads on http://127.0.0.1:{self.firmware_port}/firmware/ (releases in {firmware_dir})")
        say(f"REST (Envoy) on http://127.0.0.1:{self.gateway.port}/api (access log: {self.gateway.log_path})")
        say("ready; Ctrl-C stops everything")

    def watch(self, stop_requested: list[bool]) -> int:
        """Wait until a signal asks us to stop (0) or a child dies on its own (1)."""
        while not stop_requested:
            if self.server is not None and self.server.poll() is not None:
                say(f"the control plane exited with {self.server.returncode}; stopping the rest")
                return 1
            if (
                self.gateway is not None
                and self.gateway.process is not None
                and self.gateway.process.poll() is not None
            ):
                say(f"envoy exited with {self.gateway.process.returncode}; stopping the rest")
                return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        for name, component in reversed(self.stoppers):
            stop = getattr(component, "stop", None)
            if callable(stop):
                stop()
            say(f"{name} stopped")
        say("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.stack",
        description="Run Mosquitto (unless MQTT_URL is set), the control plane and Envoy together. "
        "Environment: PORT, GRPC_PORT, MQTT_PORT, DATA_DIR, and everything `python -m server --help` reads.",
    )
    parser.parse_args(argv)
    die_with_parent()
    stop_requested: list[bool] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_requested.append(True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = Stack(dict(os.environ))
    code = 0
    try:
        stack.start()
        code = stack.watch(stop_requested)
    except (RuntimeError, GatewayError, OSError) as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        stack.stop()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
