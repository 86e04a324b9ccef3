"""Heartbeat ingest through the MQTT bridge, against a bare subscriber on the same broker.

    python -m loadtest.bench_mqtt_ingest [--messages 20000] [--devices 10]

Starts a Mosquitto with the project's config in a temp dir, provisions device accounts, and runs
the same burst of heartbeats (QoS 0, round-robin over the devices) twice: once into a bare
paho subscriber (own network thread) that only counts messages (the broker + client-library ceiling), once into the
bridge (topic parsing, strict payload validation, worker hand-off, handler call) with a handler
that records the reports. Prints both rates and their ratio. Bounded: each phase gives up after
--phase-timeout seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from server.core.model import Heartbeat
from server.mqtt.bridge import MqttBridge
from server.mqtt.provisioning import DynsecBrokerAdmin
from server.ports.broker import OtaStatusReport, StatusReport
from tools.mosquitto import free_port, start_broker

ADMIN = ("admin", "bench-admin")
BACKEND = ("backend", "bench-backend")


class CountingHandler:
    def __init__(self) -> None:
        self.reports: list[Heartbeat] = []

    async def on_health(self, device_id: str, report: Heartbeat) -> None:
        self.reports.append(report)

    async def on_status(self, device_id: str, report: StatusReport) -> None: ...

    async def on_presence(self, device_id: str, online: bool) -> None: ...

    async def on_ota_status(self, device_id: str, report: OtaStatusReport) -> None: ...


@dataclass
class Phase:
    name: str
    received: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0


def publish_burst(host: str, port: int, device_ids: list[str], n: int) -> None:
    """Publish n heartbeats from the devices' own accounts (each may only use its own topic)."""
    clients = []
    for dev in device_ids:
        # A device account connects only under its own id as client id.
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev, protocol=mqtt.MQTTv5)
        c.username_pw_set(dev, "pw")
        c.connect(host, port)
        c.loop_start()
        clients.append(c)
    try:
        time.sleep(0.2)
        for i in range(n):
            k = i % len(clients)
            payload = f'{{"heap":{100000 + i},"uptime":{i},"fw":"1.0.0","rssi":-60}}'
            clients[k].publish(f"devices/{device_ids[k]}/health", payload, qos=0)
    finally:
        time.sleep(0.2)
        for c in clients:
            c.disconnect()
            c.loop_stop()


async def run_phase(
    name: str,
    count: Callable[[], int],
    *,
    host: str,
    port: int,
    devices: list[str],
    n: int,
    limit: float,
) -> Phase:
    """Time from the first message received to the last (or the timeout).

    The publisher runs in its own process so it doesn't compete for this one's GIL; the clock
    starts at the first arrival so its connection set-up isn't counted.
    """
    publisher = multiprocessing.get_context("spawn").Process(target=publish_burst, args=(host, port, devices, n))
    publisher.start()
    deadline = time.perf_counter() + limit
    started = 0.0
    while time.perf_counter() < deadline:
        got = count()
        if got and not started:
            started = time.perf_counter()
        if got >= n:
            break
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    await asyncio.to_thread(publisher.join, 30)
    return Phase(name, count(), elapsed)


async def bench(n: int, n_devices: int, limit: float) -> tuple[Phase, Phase]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        broker = start_broker(port, Path(tmp), *ADMIN, *BACKEND)
        with broker:
            url = broker.url
            admin = DynsecBrokerAdmin(url, *BACKEND)
            devices = [f"bench-{i:03d}" for i in range(n_devices)]
            for dev in devices:
                await admin.create_device_client(dev, "pw")
            await admin.close()

            # Baseline: a bare paho subscriber (its own network thread) that only counts.
            raw_count = 0
            subscribed = threading.Event()

            def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
                nonlocal raw_count
                raw_count += 1

            raw_client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
            raw_client.username_pw_set(*BACKEND)
            raw_client.on_message = on_message
            raw_client.on_subscribe = lambda *_a: subscribed.set()
            raw_client.connect(broker.host, port)
            raw_client.loop_start()
            raw_client.subscribe("$share/bench-raw/devices/+/health", qos=1)
            await asyncio.to_thread(subscribed.wait, 5)
            try:
                raw = await run_phase(
                    "bare paho subscriber",
                    lambda: raw_count,
                    host=broker.host,
                    port=port,
                    devices=devices,
                    n=n,
                    limit=limit,
                )
            finally:
                raw_client.disconnect()
                raw_client.loop_stop()

            handler = CountingHandler()
            bridge = MqttBridge(url, *BACKEND, share_group="bench-bridge")
            assert await bridge.start(handler)
            try:
                through = await run_phase(
                    "bridge -> handler",
                    lambda: len(handler.reports),
                    host=broker.host,
                    port=port,
                    devices=devices,
                    n=n,
                    limit=limit,
                )
            finally:
                await bridge.stop()
            return raw, through


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_mqtt_ingest")
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--phase-timeout", type=float, default=25.0)
    args = parser.parse_args()
    raw, through = asyncio.run(bench(args.messages, args.devices, args.phase_timeout))
    for p in (raw, through):
        print(f"{p.name:28s} {p.received:7d}/{args.messages} msgs in {p.seconds:6.2f}s = {p.rate:9.0f} msg/s")
    ratio = through.rate / raw.rate if raw.rate else 0.0
    print(f"bridge/bare ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
