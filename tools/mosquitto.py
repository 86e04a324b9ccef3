"""Start a local Mosquitto broker with the project's config (dynamic security, persistence).

Used by `make run` (tools/stack.py), by the test suite (tests/support/mosquitto.py) and by hand:

    python -m tools.mosquitto --port 1883 --data-dir data/mosquitto

On the first start in a data dir the dynamic-security file is created with `mosquitto_ctrl dynsec
init` (admin client), then the broker is started and, over its `$CONTROL/dynamic-security/v1`
topic, a `backend` role and client are ensured. Later starts on the same data dir keep every
client, role and password (device credentials survive restarts); only the backend's password is
re-set, so changing MQTT_PASS and restarting is how an operator rotates it.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from string import Template
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from server.mqtt import dynsec

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TEMPLATE = ROOT / "deploy" / "mosquitto" / "mosquitto.conf.template"
DYNSEC_FILE = "dynamic-security.json"
_PLUGIN_NAME = "mosquitto_dynamic_security.so"
_PLUGIN_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/lib/mosquitto",
    "/opt/homebrew/lib",
    "/usr/local/opt/mosquitto/lib",
)


class BrokerError(RuntimeError):
    """The broker could not be found, started or configured; the message says what to do."""


def find_executable(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin") if (p := Path(d) / name).exists()),
        None,
    )
    if found is None:
        raise BrokerError(f"{name} not found. Install Mosquitto: sudo apt-get install mosquitto mosquitto-clients")
    return found


def find_dynsec_plugin() -> Path:
    """The dynamic-security plugin of the installed Mosquitto."""
    env = os.environ.get("MOSQUITTO_DYNSEC_PLUGIN")
    if env:
        return Path(env)
    for d in _PLUGIN_DIRS:
        if (p := Path(d) / _PLUGIN_NAME).exists():
            return p
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listing = subprocess.run(
            ["dpkg", "-L", "mosquitto"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
        for line in listing.splitlines():
            if line.endswith(_PLUGIN_NAME) and Path(line).exists():
                return Path(line)
    raise BrokerError(
        f"{_PLUGIN_NAME} not found (looked in {', '.join(_PLUGIN_DIRS)} and `dpkg -L mosquitto`); "
        "set MOSQUITTO_DYNSEC_PLUGIN to its path"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _connect_host(bind_address: str) -> str:
    if bind_address in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    if bind_address == "::":
        return "::1"
    return bind_address


def render_config(
    port: int,
    data_dir: Path,
    *,
    bind_address: str = "127.0.0.1",
    ws_port: int | None = None,
    plugin: Path | None = None,
) -> str:
    extra = ""
    if ws_port is not None:
        # The seed's devices and dashboards speak MQTT over WebSockets (MQTT_WS_URL).
        extra = f"\nlistener {ws_port} {bind_address}\nprotocol websockets\n"
    return Template(CONFIG_TEMPLATE.read_text()).substitute(
        port=port,
        bind_address=bind_address,
        extra_listeners=extra,
        dynsec_plugin=plugin or find_dynsec_plugin(),
        data_dir=str(data_dir.resolve()),
        run_user=getpass.getuser(),
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class BrokerProcess:
    """A running Mosquitto; `stop()` (or leaving the `with` block) ends it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        host: str,
        port: int,
        data_dir: Path,
        log_path: Path,
        ws_port: int | None,
    ) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path
        self.ws_port = ws_port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str | None:
        return None if self.ws_port is None else f"ws://{self.host}:{self.ws_port}"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file), then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def kill(self) -> None:
        """End the broker abruptly (no persistence save), as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_for_port(proc: subprocess.Popen[bytes], host: str, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.05)
    return False


def dynsec_commands(
    host: str,
    port: int,
    *,
    username: str,
    password: str,
    commands: Sequence[dict[str, Any]],
    timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Send dynamic-security commands as one request; return the broker's responses in order.

    A blocking helper for the launcher (the server uses server/mqtt/provisioning.py, async).
    """
    connected = threading.Event()
    subscribed = threading.Event()
    answered = threading.Event()
    state: dict[str, Any] = {}
    corr = uuid.uuid4().hex

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None) -> None:
        state["connack"] = rc
        connected.set()

    def on_subscribe(c: mqtt.Client, _u: Any, _mid: int, rcs: list[ReasonCode], _p: Properties | None) -> None:
        state["suback"] = rcs
        subscribed.set()

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        answer = dynsec.decode_response(msg.payload)
        if answer is not None and answer[0] == corr:
            state["responses"] = answer[1]
            answered.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"mosquitto-launcher-{corr[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise BrokerError("no CONNACK from the broker")
        if state["connack"].is_failure:
            raise BrokerError(f"dynsec admin login as {username!r} refused: {state['connack']}")
        client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
        if not subscribed.wait(timeout) or any(rc.is_failure for rc in state["suback"]):
            raise BrokerError(f"cannot subscribe to {dynsec.RESPONSE_TOPIC}")
        client.publish(dynsec.TOPIC, dynsec.encode_request(commands, corr), qos=1)
        if not answered.wait(timeout):
            raise BrokerError("no answer from the dynamic-security plugin")
        return list(state["responses"])
    finally:
        client.disconnect()
        client.loop_stop()


def can_log_in(host: str, port: int, username: str, password: str, timeout: float = 5.0) -> bool:
    """Whether the broker accepts these credentials (a CONNECT, then a clean DISCONNECT)."""
    answered = threading.Event()
    state: dict[str, ReasonCode] = {}

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None) -> None:
        state["connack"] = rc
        answered.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"mosquitto-launcher-check-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=30)
    except OSError:
        return False
    client.loop_start()
    try:
        return answered.wait(timeout) and not state["connack"].is_failure
    finally:
        client.disconnect()
        client.loop_stop()


def ensure_backend(host: str, port: int, *, admin_user: str, admin_pw: str, backend_user: str, backend_pw: str) -> None:
    """Create (or repair) the backend role and client; idempotent (server/mqtt/dynsec.py)."""
    account = dynsec.backend_account(backend_user, backend_pw)

    def call(commands: list[dynsec.Command]) -> list[dynsec.Response]:
        return dynsec_commands(host, port, username=admin_user, password=admin_pw, commands=commands)

    role_r, client_r = call(dynsec.look_up(account))
    commands = dynsec.ensure(account, role_r, client_r)
    if not client_r.get("error") and can_log_in(host, port, backend_user, backend_pw):
        # Mosquitto enforces a new password by disconnecting every session of the client at
        # once. Setting the same one again would kick a control plane that reconnected to a
        # restarted broker before this ran, and device messages sent meanwhile are lost.
        commands = [c for c in commands if c.get("command") != "setClientPassword"]
    if not commands:
        return  # all in order (the plugin does not answer an empty request)
    try:
        dynsec.check(call(commands))
    except dynsec.DynsecError as exc:
        raise BrokerError(f"dynsec {exc.command} failed: {exc.error}") from None


def start_broker(
    port: int,
    data_dir: Path,
    admin_user: str,
    admin_password: str,
    backend_user: str,
    backend_password: str,
    *,
    bind_address: str = "127.0.0.1",
    ws_port: int | None = None,
    startup_timeout: float = 10.0,
    preexec_fn: Callable[[], None] | None = None,
) -> BrokerProcess:
    """Start Mosquitto on `port` with its state in `data_dir`; return once it accepts clients."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    dynsec_file = data_dir / DYNSEC_FILE
    if not dynsec_file.exists():
        init = subprocess.run(
            [
                find_executable("mosquitto_ctrl"),
                "dynsec",
                "init",
                str(dynsec_file),
                admin_user,
                admin_password,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if init.returncode != 0:
            raise BrokerError(f"mosquitto_ctrl dynsec init failed: {init.stdout}{init.stderr}")
    dynsec_file.chmod(0o600)
    conf = data_dir / "mosquitto.conf"
    conf.write_text(render_config(port, data_dir, bind_address=bind_address, ws_port=ws_port))
    log_path = data_dir / "mosquitto.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [find_executable("mosquitto"), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal goes to the supervisor, which stops us
            preexec_fn=preexec_fn,  # noqa: PLW1509 - the supervisor ties us to its life (PDEATHSIG)
        )
    host = _connect_host(bind_address)
    broker = BrokerProcess(proc, host=host, port=port, data_dir=data_dir, log_path=log_path, ws_port=ws_port)
    deadline = time.monotonic() + startup_timeout
    ready = _wait_for_port(proc, host, port, deadline)
    if ready and ws_port is not None:
        ready = _wait_for_port(proc, host, ws_port, deadline)
    if not ready:
        broker.stop()
        raise BrokerError(
            f"mosquitto did not start on {host}:{port} (exit code {proc.poll()}); log {log_path}:\n{_tail(log_path)}"
        )
    try:
        ensure_backend(
            host,
            port,
            admin_user=admin_user,
            admin_pw=admin_password,
            backend_user=backend_user,
            backend_pw=backend_password,
        )
    except BrokerError as exc:
        broker.stop()
        raise BrokerError(f"{exc}; log {log_path}:\n{_tail(log_path)}") from None
    return broker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.mosquitto",
        description="Run a Mosquitto broker with the project's config until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--bind", default="127.0.0.1", help="listen address (0.0.0.0 for all)")
    parser.add_argument("--ws-port", type=int, default=None, help="also listen for MQTT over WS")
    parser.add_argument("--data-dir", type=Path, default=Path("data/mosquitto"))
    parser.add_argument("--admin-user", default=os.environ.get("MQTT_ADMIN_USER", "admin"))
    parser.add_argument("--admin-password", default=os.environ.get("MQTT_ADMIN_PASS"))
    parser.add_argument("--backend-user", default=os.environ.get("MQTT_USER", "backend"))
    parser.add_argument("--backend-password", default=os.environ.get("MQTT_PASS"))
    args = parser.parse_args(argv)
    if not args.admin_password or not args.backend_password:
        parser.error("set --admin-password/MQTT_ADMIN_PASS and --backend-password/MQTT_PASS")
    try:
        broker = start_broker(
            args.port,
            args.data_dir,
            args.admin_user,
            args.admin_password,
            args.backend_user,
            args.backend_password,
            bind_address=args.bind,
            ws_port=args.ws_port,
        )
    except BrokerError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"mosquitto on {broker.url} (log {broker.log_path}); Ctrl-C stops it", flush=True)
    with broker, contextlib.suppress(KeyboardInterrupt):
        while broker.is_running():
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
