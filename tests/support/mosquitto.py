"""A real Mosquitto for tests: the project's config, a free port, its own temp dir."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tools.mosquitto import BrokerProcess, free_port, start_broker

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-secret"
BACKEND_USER, BACKEND_PASSWORD = "backend", "backend-secret"


@dataclass
class BrokerUnderTest:
    data_dir: Path
    port: int
    process: BrokerProcess
    admin_user: str = ADMIN_USER
    admin_password: str = ADMIN_PASSWORD
    backend_user: str = BACKEND_USER
    backend_password: str = BACKEND_PASSWORD

    @property
    def host(self) -> str:
        return self.process.host

    @property
    def url(self) -> str:
        return self.process.url

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        """(Re)start on the same port and data dir: clients and passwords are kept."""
        self.process = start_broker(
            self.port,
            self.data_dir,
            self.admin_user,
            self.admin_password,
            self.backend_user,
            self.backend_password,
        )


@contextlib.contextmanager
def mosquitto_broker(data_dir: Path) -> Iterator[BrokerUnderTest]:
    port = free_port()
    process = start_broker(port, data_dir, ADMIN_USER, ADMIN_PASSWORD, BACKEND_USER, BACKEND_PASSWORD)
    broker = BrokerUnderTest(data_dir, port, process)
    try:
        yield broker
    finally:
        broker.process.stop()


async def eventually(predicate: Callable[[], bool], within: float = 3.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `within` seconds pass; return its last value."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
    return True


@dataclass
class DeviceClient:
    """A paho MQTT 5 client in its own thread, recording what the broker says to it."""

    host: str
    port: int
    username: str
    password: str
    client_id: str = ""
    will: tuple[str, bytes] | None = None
    connack: ReasonCode | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    _client: mqtt.Client | None = None

    def connect(self, timeout: float = 3.0) -> ReasonCode | None:
        """Connect and wait for the CONNACK (None if none came)."""
        self.connected.clear()
        self.disconnected.clear()
        self.connack = None
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            # A device account may connect only with client id == its username (the device id).
            client_id=self.client_id or self.username,
            protocol=mqtt.MQTTv5,
        )
        c.username_pw_set(self.username, self.password)
        if self.will is not None:
            c.will_set(self.will[0], self.will[1], qos=1)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self._client = c
        c.connect(self.host, self.port, keepalive=10)
        c.loop_start()
        self.connected.wait(timeout)
        return self.connack

    @property
    def client(self) -> mqtt.Client:
        assert self._client is not None
        return self._client

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None) -> None:
        self.connack = rc
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None) -> None:
        self.disconnected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, rcs: list[ReasonCode], _p: Properties | None) -> None:
        self.subacks[mid] = rcs

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Properties | None) -> None:
        self.pubacks[mid] = rc

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.append(msg)

    async def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic, qos)
        assert mid is not None
        assert await eventually(lambda: mid in self.subacks), f"no SUBACK for {topic}"
        return self.subacks[mid]

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> ReasonCode | None:
        """Publish; for QoS 1 wait for the PUBACK and return its reason code."""
        info = self.client.publish(topic, payload, qos)
        if qos == 0:
            return None
        assert await eventually(lambda: info.mid in self.pubacks), f"no PUBACK on {topic}"
        return self.pubacks[info.mid]

    def drop_connection(self) -> None:
        """Vanish without DISCONNECT, as a device losing power would (the broker sends the will)."""
        c = self.client
        c.loop_stop()
        sock = c.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._client = None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.disconnect()
            self._client.loop_stop()
            self._client = None
