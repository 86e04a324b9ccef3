"""Prometheus metrics: one registry for the process, rendered on the metrics endpoint.

A module-level registry (not prometheus_client's global one) so tests can read values and
several in-process servers in a test run don't collide on registration.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

RPC_TOTAL = Counter(
    "grpc_server_handled_total",
    "RPCs completed, by method and status code",
    ["method", "code"],
    registry=REGISTRY,
)
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "RPC latency in seconds, by method",
    ["method"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


def observe_rpc(method: str, code: str, seconds: float) -> None:
    RPC_TOTAL.labels(method=method, code=code).inc()
    RPC_LATENCY.labels(method=method).observe(seconds)


# ---- MQTT bridge (server/mqtt) -------------------------------------------------------------

MQTT_RECEIVED = Counter(
    "mqtt_messages_received_total",
    "Device messages received by the MQTT bridge, by kind (before validation).",
    ["kind"],
    registry=REGISTRY,
)
MQTT_PUBLISHED = Counter(
    "mqtt_messages_published_total",
    "Messages published to devices and acknowledged by the broker, by kind.",
    ["kind"],
    registry=REGISTRY,
)
MQTT_DROPPED = Counter(
    "mqtt_messages_dropped_total",
    "Inbound device messages dropped, by reason (bad topic or payload, unknown or blocked device, handler error).",
    ["reason"],
    registry=REGISTRY,
)
MQTT_CONNECTED = Gauge(
    "mqtt_connected",
    "1 while the bridge is connected to the broker and subscribed, else 0.",
    registry=REGISTRY,
)
MQTT_LISTENER_FAILURES = Counter(
    "mqtt_listener_failures_total",
    "Times the bridge's listener ended on an unexpected error (a bug) and was restarted.",
    registry=REGISTRY,
)
MQTT_RECONNECTS = Counter(
    "mqtt_reconnects_total",
    "Times the bridge lost its broker connection and connected again.",
    registry=REGISTRY,
)

# ---- devices (server/core/inbound.py, presence.py) ------------------------------------------

DEVICES_ONLINE = Gauge(
    "devices_online",
    "Devices currently online, fleet-wide (refreshed by every offline sweep).",
    registry=REGISTRY,
)
DEVICE_EVENTS_DROPPED = Counter(
    "device_events_dropped_total",
    "Device events a slow WatchDeviceEvents subscriber lost (its oldest queued ones).",
    registry=REGISTRY,
)

# ---- OTA (server/core/ota.py) ----------------------------------------------------------------

OTA_REPORTS_REJECTED = Counter(
    "ota_reports_rejected_total",
    "OTA status reports dropped: unknown_job, wrong_device (another device's job), illegal_transition.",
    ["reason"],
    registry=REGISTRY,
)
OTA_EVENTS_DROPPED = Counter(
    "ota_events_dropped_total",
    "OTA events slow WatchOtaEvents subscribers lost (their oldest queued ones).",
    registry=REGISTRY,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class MetricsServer:
    """The Prometheus endpoint (`/metrics`), served by prometheus_client's own HTTP server in
    a daemon thread: scraping never waits on the event loop, and stop() closes the socket."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else 0

    def start(self) -> int:
        self._server, self._thread = start_http_server(self._port, addr=self._host, registry=REGISTRY)
        return self.port

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()  # returns once serve_forever has left its loop (<= 0.5 s)
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)


def render() -> bytes:
    """The registry in Prometheus text format (serve it with CONTENT_TYPE)."""
    return generate_latest(REGISTRY)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (0.0 if absent); for tests and the dashboard."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
