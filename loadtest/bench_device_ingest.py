"""Heartbeats ingested end to end (publish -> stored), next to a bare subscriber on the same broker.

    python -m loadtest.bench_device_ingest [--messages 30000] [--devices 10]

Starts a Mosquitto with the project's config and the real control plane in this process (SQLite
store in a temp dir, the MQTT bridge, the device core, the heartbeat write-behind), registers
the devices through core, then sends the same burst of heartbeats (QoS 0, round-robin over the
devices, from a separate process) twice: into a bare paho subscriber that only counts (the
broker + client-library ceiling), and into the control plane. The end-to-end clock runs from the
first heartbeat core receives until the store holds every device's last heartbeat (the write-
behind coalesces per device, so a heartbeat counts as stored once it or a newer one is written).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from loadtest.bench_mqtt_ingest import Phase, run_phase
from server.app import ControlPlane
from server.core.caller import Caller
from server.core.model import Role
from server.settings import Settings
from tools.mosquitto import free_port, start_broker

ADMIN = ("admin", "bench-admin")
BACKEND = ("backend", "bench-backend")
PASSWORD = "pw"  # what bench_mqtt_ingest.publish_burst connects with


async def bare_subscriber(host: str, port: int, devices: list[str], n: int, limit: float) -> Phase:
    count = 0
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    client.username_pw_set(*BACKEND)
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect(host, port)
    client.loop_start()
    client.subscribe("$share/bench-raw/devices/+/health", qos=1)
    await asyncio.to_thread(subscribed.wait, 5)
    try:
        return await run_phase(
            "bare paho subscriber", lambda: count, host=host, port=port, devices=devices, n=n, limit=limit
        )
    finally:
        client.disconnect()
        client.loop_stop()


async def end_to_end(plane: ControlPlane, host: str, port: int, devices: list[str], n: int, limit: float) -> Phase:
    writer = plane.heartbeat_writer
    assert writer is not None
    base = writer.stats.submitted
    # publish_burst sends heartbeat i from device i % len(devices) with uptime i.
    last_uptime = {dev: max(i for i in range(n) if i % len(devices) == k) for k, dev in enumerate(devices) if k < n}
    received = await run_phase(
        "control plane (ingest)",
        lambda: writer.stats.submitted - base,
        host=host,
        port=port,
        devices=devices,
        n=n,
        limit=limit,
    )
    # run_phase timed first arrival -> last submit; now wait until the store has them all.
    started = time.perf_counter() - received.seconds
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        stored = [await plane.store.devices.get(dev) for dev in last_uptime]
        if all(d.health is not None and d.health.uptime == last_uptime[d.device_id] for d in stored):
            break
        await asyncio.sleep(0.005)
    else:
        print("warning: not every device's last heartbeat was stored before the timeout")
    return Phase("publish -> stored (end to end)", received.received, time.perf_counter() - started)


async def bench(n: int, n_devices: int, limit: float) -> tuple[Phase, Phase]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        broker = start_broker(port, Path(tmp) / "mosquitto", *ADMIN, *BACKEND)
        with broker:
            settings = Settings.from_env(
                {
                    "ENV": "test",
                    "GRPC_HOST": "127.0.0.1",
                    "GRPC_PORT": "0",
                    "DATA_DIR": str(Path(tmp) / "data"),
                    "MQTT_URL": broker.url,
                    "MQTT_USER": BACKEND[0],
                    "MQTT_PASS": BACKEND[1],
                    "LOG_LEVEL": "WARNING",
                    # No device goes offline mid-run (nor gets an activity entry for it).
                    "OFFLINE_AFTER_SECONDS": "3600",
                }
            )
            devices = [f"bench-{i:03d}" for i in range(n_devices)]
            plane = ControlPlane(settings)
            await plane.start()
            try:
                owner = Caller("bench-user", Role.USER)
                assert plane.broker_admin is not None
                for dev in devices:
                    await plane.devices.register(owner, dev, dev)
                    await plane.broker_admin.set_device_password(dev, PASSWORD)
            finally:
                await plane.stop(grace=1)
            # The baseline runs with no control plane subscribed, so nothing else competes for it.
            raw = await bare_subscriber(broker.host, port, devices, n, limit)
            plane = ControlPlane(settings)  # the same store: the devices registered above
            await plane.start()
            try:
                through = await end_to_end(plane, broker.host, port, devices, n, limit)
            finally:
                await plane.stop(grace=1)
            return raw, through


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_device_ingest")
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--phase-timeout", type=float, default=30.0)
    args = parser.parse_args()
    raw, through = asyncio.run(bench(args.messages, args.devices, args.phase_timeout))
    for p in (raw, through):
        print(f"{p.name:32s} {p.received:7d}/{args.messages} msgs in {p.seconds:6.2f}s = {p.rate:9.0f} msg/s")
    ratio = through.rate / raw.rate if raw.rate else 0.0
    print(f"end-to-end/bare ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
