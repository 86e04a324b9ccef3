"""The MQTT bridge: device messages in (validated, handed to core), commands and OTA jobs out.

One aiomqtt client per connection, opened by `start()`; a supervisor task reconnects with capped
exponential back-off and jitter and re-subscribes on every connect (the session is clean, so the
broker holds no state for us). Subscriptions are MQTT 5 shared subscriptions
(`$share/<group>/devices/+/health`, ...): every control-plane replica uses the same group and the
broker hands each message to one of them, so replicas split the traffic instead of duplicating it.

Inbound messages are parsed in the listener and handed to a few workers, chosen by device id so a
device's messages are handled in order while a slow handler for one device doesn't stall the
rest. Nothing a device sends can stop the bridge: every failure is counted in
`mqtt_messages_dropped_total{reason}` and logged at a bounded rate.

That promise is kept in layers, because one missed case used to end all ingest for good (a
parser error that was not a PayloadError escaped the listener, and a retained copy of the message
killed it again after every restart): the parser refuses hostile input as PayloadError; the
dispatch of one message drops *any* exception as `internal_error`; and if the listener still
ends, the supervisor logs it, counts `mqtt_listener_failures_total` and reconnects as after a
lost connection. `on_link` tells the application whenever the link goes up or down, so health
says NOT_SERVING while no device can be heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiomqtt

from server import metrics
from server.core.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from server.core.model import Heartbeat, LedState, OtaOffer
from server.mqtt.connection import make_client, parse_url
from server.mqtt.payloads import DEFAULT_MAX_PAYLOAD, PayloadError, encode_led_command, encode_ota_offer, parse
from server.mqtt.ratelimit import RateLimitedLogger
from server.mqtt.topics import (
    InboundKind,
    OutboundKind,
    device_topic,
    parse_inbound,
    subscription_filters,
)
from server.ports.broker import InboundHandler, OtaStatusReport, StatusReport
from server.ports.clock import Clock, SystemClock

log = logging.getLogger(__name__)

_KIND_LABEL = {k: k.name.lower() for k in InboundKind}  # "ota_status", not "ota/status"
_Job = tuple[str, InboundKind, Any]
INCOMING_QUEUE_LIMIT = 50_000


class _ClientLogFilter(logging.Filter):
    """Counts aiomqtt's own overflow drops and keeps them from flooding the log.

    When device traffic outruns the handlers, aiomqtt discards messages past its queue limit and
    logs one warning per message; under a burst that logging alone slowed ingest tenfold.
    """

    def __init__(self, limited: RateLimitedLogger) -> None:
        super().__init__()
        self._limited = limited

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Message queue is full"):
            metrics.MQTT_DROPPED.labels("overloaded").inc()
            self._limited.log(
                logging.WARNING,
                "overloaded",
                "MQTT ingest overloaded: incoming queue full, dropping messages (handlers slower than device traffic)",
            )
            return False
        return True


class MqttBridge:
    """Implements the DevicePublisher port; feeds an InboundHandler (core)."""

    def __init__(
        self,
        url: str,
        username: str | None,
        password: str | None,
        *,
        share_group: str | None = "control-plane",
        client_id_prefix: str = "control-plane",
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        workers: int = 4,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 15.0,
        keepalive: int = 30,
        tls_context: ssl.SSLContext | None = None,
        log_lines_per_minute: int = 5,
        clock: Clock | None = None,
        on_link: Callable[[bool], None] | None = None,
    ) -> None:
        self._endpoint = parse_url(url)
        self._username = username
        self._password = password
        # Given to start(): core is built after the bridge (it publishes through it), and no
        # message can arrive before the bridge connects.
        self._handler: InboundHandler | None = None
        self._filters = subscription_filters(share_group)
        # Stable across reconnects: if the broker still holds a half-open old connection, the
        # new one with the same id takes over instead of both receiving a share.
        self._client_id = f"{client_id_prefix}-{uuid.uuid4().hex[:12]}"
        self._max_payload = max_payload
        self._clock = clock or SystemClock()  # stamps heartbeats; the plane passes core's clock
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._keepalive = keepalive
        self._tls_context = tls_context
        self._limited = RateLimitedLogger(log, per_window=log_lines_per_minute)
        self._client_log = logging.getLogger(f"{__name__}.client")
        if not self._client_log.filters:
            self._client_log.addFilter(_ClientLogFilter(self._limited))
        self._queues: list[asyncio.Queue[_Job]] = [asyncio.Queue(maxsize=1000) for _ in range(max(1, workers))]
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._on_link = on_link
        self._supervisor: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.connections = 0  # successful connects so far (tests and the dashboard read it)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, handler: InboundHandler, wait: float | None = None) -> bool:
        """Start connecting and delivering device messages to `handler`; return whether
        connected within `wait` s (default connect_timeout).

        Not being connected yet is not an error: the bridge keeps retrying in the background
        and publishing raises Unavailable until it succeeds.
        """
        if self._supervisor is not None:
            raise RuntimeError("MqttBridge already started")
        self._handler = handler
        self._workers = [
            asyncio.create_task(self._worker(q), name=f"mqtt-worker-{i}") for i, q in enumerate(self._queues)
        ]
        self._supervisor = asyncio.create_task(self._run(), name="mqtt-bridge")
        connected = await self.wait_connected(self._connect_timeout if wait is None else wait)
        if not connected:
            log.warning("MQTT broker not reachable yet; retrying in the background")
        return connected

    async def stop(self, drain: float = 1.0) -> None:
        """Disconnect cleanly, give queued messages `drain` seconds, then stop the workers."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
            except Exception:
                # The supervisor never ends by itself; if a bug made it, stopping still completes.
                log.exception("MQTT bridge supervisor had failed")
            self._supervisor = None
        if self._workers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain):
                    for q in self._queues:
                        await q.join()
            for t in self._workers:
                t.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        return self._connected.is_set()

    async def _run(self) -> None:
        backoff = self._backoff_initial
        while True:
            client = make_client(
                self._endpoint,
                username=self._username,
                password=self._password,
                identifier=self._client_id,
                timeout=self._connect_timeout,
                keepalive=self._keepalive,
                tls_context=self._tls_context,
                max_queued_incoming=INCOMING_QUEUE_LIMIT,
                logger=self._client_log,
            )
            try:
                async with client:
                    await self._subscribe(client)
                    self._on_connected(client)
                    backoff = self._backoff_initial
                    async for message in client.messages:
                        await self._dispatch(message)
            except aiomqtt.MqttError as exc:
                self._limited.log(
                    logging.WARNING,
                    "connection",
                    "MQTT connection to %s:%s failed or lost: %s",
                    self._endpoint.host,
                    self._endpoint.port,
                    exc,
                )
            except Exception:
                # A bug, not the network: the listener must not stay dead, so it is restarted
                # like a lost connection (same back-off), loudly.
                metrics.MQTT_LISTENER_FAILURES.inc()
                self._limited.log(
                    logging.ERROR,
                    "listener_failed",
                    "MQTT listener failed; reconnecting",
                    exc_info=True,
                )
            finally:
                self._client = None
                was_connected = self._connected.is_set()
                self._connected.clear()
                metrics.MQTT_CONNECTED.set(0)
                if was_connected:
                    self._notify_link(False)
            # Full jitter keeps a fleet of replicas from reconnecting in lock-step.
            await asyncio.sleep(random.uniform(backoff / 2, backoff))  # noqa: S311
            backoff = min(backoff * 2, self._backoff_max)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        granted = await client.subscribe([(f, 1) for f in self._filters])
        refused = [
            f
            for f, rc in zip(self._filters, granted, strict=False)
            if (getattr(rc, "is_failure", False) or (isinstance(rc, int) and rc >= 0x80))
        ]
        if refused:
            # Usually the backend's ACL: it needs subscribe on devices/# and $share/+/devices/#.
            raise aiomqtt.MqttError(f"subscription refused by the broker: {refused}")

    def _on_connected(self, client: aiomqtt.Client) -> None:
        self._client = client
        self.connections += 1
        if self.connections > 1:
            metrics.MQTT_RECONNECTS.inc()
        metrics.MQTT_CONNECTED.set(1)
        self._connected.set()
        self._notify_link(True)
        log.info(
            "MQTT bridge connected to %s:%s as %s",
            self._endpoint.host,
            self._endpoint.port,
            self._client_id,
        )

    def _notify_link(self, up: bool) -> None:
        if self._on_link is None:
            return
        try:
            self._on_link(up)
        except Exception:
            log.exception("MQTT link callback failed")

    # ---- inbound ---------------------------------------------------------------------------

    def _drop(self, reason: str, topic: str, detail: object = "") -> None:
        metrics.MQTT_DROPPED.labels(reason).inc()
        self._limited.log(
            logging.WARNING,
            reason,
            "dropped MQTT message on %r (%s) %s",
            topic[:200],
            reason,
            detail,
        )

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        """Validate one message and queue it for its device's worker; any failure is a drop."""
        try:
            await self._dispatch_one(message)
        except Exception as exc:
            # Whatever the cause, it concerns this message only: drop it, never the listener.
            metrics.MQTT_DROPPED.labels("internal_error").inc()
            self._limited.log(
                logging.ERROR,
                "internal_error",
                "dropped MQTT message on %r (internal_error): %s",
                str(getattr(message.topic, "value", "?"))[:200],
                type(exc).__name__,
                exc_info=True,
            )

    async def _dispatch_one(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        parsed = parse_inbound(topic)
        if parsed is None:
            metrics.MQTT_RECEIVED.labels("unknown").inc()
            self._drop("bad_topic", topic)
            return
        device_id, kind = parsed
        metrics.MQTT_RECEIVED.labels(_KIND_LABEL[kind]).inc()
        if message.retain and kind is not InboundKind.PRESENCE:
            # A retained heartbeat replayed on subscribe is old news, not a sign of life.
            self._drop("stale_retained", topic)
            return
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode() if payload is not None else b""
        try:
            report = parse(kind, bytes(payload), self._max_payload, device_id=device_id)
        except PayloadError as exc:
            self._drop(exc.reason, topic, exc.detail)
            return
        await self._queues[hash(device_id) % len(self._queues)].put((device_id, kind, report))

    async def _worker(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            device_id, kind, report = await queue.get()
            try:
                await self._deliver(device_id, kind, report)
            finally:
                queue.task_done()

    async def _deliver(self, device_id: str, kind: InboundKind, report: Any) -> None:
        topic = f"devices/{device_id}/{kind.value}"
        handler = self._handler
        assert handler is not None  # the workers run only after start(handler)
        try:
            match kind:
                case InboundKind.HEALTH:
                    assert isinstance(report, Heartbeat)
                    # Stamped as it is handed over, not as it was read: the device's earlier
                    # messages (its presence) are handled by now, and the store keeps only a
                    # heartbeat at least as new as the presence change before it.
                    await handler.on_health(device_id, replace(report, at=self._clock.now()))
                case InboundKind.STATUS:
                    assert isinstance(report, StatusReport)
                    await handler.on_status(device_id, report)
                case InboundKind.OTA_STATUS:
                    assert isinstance(report, OtaStatusReport)
                    await handler.on_ota_status(device_id, report)
                case InboundKind.PRESENCE:
                    assert isinstance(report, bool)
                    await handler.on_presence(device_id, report)
        except NotFound:
            self._drop("unknown_device", topic)
        except PermissionDenied:
            self._drop("blocked_device", topic)
        except Exception:
            metrics.MQTT_DROPPED.labels("handler_error").inc()
            self._limited.log(
                logging.ERROR,
                "handler_error",
                "handler failed for %r",
                topic,
                exc_info=True,
            )

    # ---- outbound (DevicePublisher) --------------------------------------------------------

    async def publish_led(self, device_id: str, command_id: str, state: LedState) -> None:
        await self._publish(OutboundKind.COMMAND, device_id, encode_led_command(command_id, state))

    async def publish_ota(self, device_id: str, offer: OtaOffer) -> None:
        await self._publish(OutboundKind.OTA, device_id, encode_ota_offer(offer))

    async def _publish(self, kind: OutboundKind, device_id: str, data: bytes) -> None:
        try:
            topic = device_topic(device_id, kind)
        except ValueError:
            raise InvalidArgument(f"invalid device id {device_id!r}") from None
        client = self._client
        if client is None:
            raise Unavailable("MQTT broker unavailable")
        try:
            # Bounded: if the connection drops before the PUBACK, this times out, never hangs.
            await client.publish(topic, data, qos=1, timeout=self._publish_timeout)
        except aiomqtt.MqttError:
            raise Unavailable("MQTT broker unavailable") from None
        metrics.MQTT_PUBLISHED.labels(kind.value).inc()
