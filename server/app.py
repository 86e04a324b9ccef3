"""The composition root: Settings -> adapters -> core -> servers. The only module that knows every part.

`ControlPlane.start()` binds and returns the gRPC port (0 picks a free one, which the tests
use); `stop(grace)` stops accepting calls, lets in-flight ones finish within the grace period,
then closes what was opened, in reverse order. Every step of stop() runs even when an earlier one
fails (the failure is logged): a broken bridge must not cost the buffered heartbeats or leave
the store open.

gRPC health follows the MQTT link: while the bridge cannot hear devices (broker unreachable, or
its listener restarting), the server ("") and the device-facing services say NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from firmware_tools.signing import load_public_key
from server import metrics
from server.api.admin import AdminServicer
from server.api.auth import AuthServicer
from server.api.dashboard import DashboardServicer
from server.api.devices import DeviceServicer
from server.api.interceptors import Authorizer, CallInterceptor
from server.api.ota import OtaServicer
from server.api.releases import ReleaseServicer
from server.api.rollouts import RolloutServicer
from server.api.services import SERVICES, ServiceSpec
from server.auth.authorizer import PolicyAuthorizer
from server.auth.passwords import Passwords
from server.auth.tokens import Tokens
from server.core.activity import ActivityLog
from server.core.dashboard import Dashboard
from server.core.device_changes import DeviceChanges
from server.core.errors import DomainError
from server.core.fleet_events import DeviceEventHub
from server.core.heartbeats import HeartbeatWriter
from server.core.inbound import DeviceInbound
from server.core.led import LedCommands
from server.core.ota import OtaEventHub, OtaJobs
from server.core.ota_status import LatestOtaStatus
from server.core.presence import OfflineSweeper, sweep_interval
from server.core.presence_view import PresenceView
from server.core.registry import BrokerAddress, DeviceRegistry
from server.core.releases import Releases
from server.core.rollouts import Rollouts, RolloutScheduler
from server.core.users import Users
from server.firmware.local import FirmwareHttpServer, LocalCatalog, UrlSigner, derive_url_key
from server.mqtt.bridge import MqttBridge
from server.mqtt.connection import parse_url
from server.mqtt.provisioning import DynsecBrokerAdmin
from server.ports.catalog import FirmwareCatalog
from server.ports.clock import Clock, SystemClock
from server.ports.store import Store
from server.settings import Settings
from server.store.factory import open_store

log = logging.getLogger("server.app")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# gRPC's defaults (8 KiB soft, 16 KiB hard) refused, at random between the two, REST calls whose
# long path Envoy forwards as x-envoy-original-path: an 8,000-character id answered 429. One
# limit, above what Envoy lets through (gateway/config.py max_request_headers_kb), so every
# request Envoy accepts reaches its handler; direct gRPC callers get the same fixed limit.
MAX_METADATA_BYTES = 64 * 1024
# How long start() waits for the broker before serving anyway (the bridge keeps retrying).
MQTT_START_WAIT_SECONDS = 2.0
# Broker account names a device id may never take over (the backend's own is added by the admin).
RESERVED_BROKER_USERNAMES = ("admin",)
# What health reports NOT_SERVING while the MQTT link is down: the server as a whole, and the
# services whose calls need the broker (commands, OTA jobs). Users, admin and releases still work.
MQTT_DEPENDENT_SERVICES = ("", "iot.v1.DeviceService", "iot.v1.OtaService", "iot.v1.RolloutService")


def broker_address(settings: Settings) -> BrokerAddress:
    """Where devices connect: MQTT_PUBLIC_URL if set, else MQTT_URL, without any credentials."""
    url = settings.mqtt_public_url or settings.mqtt_url
    endpoint = parse_url(url)
    scheme = url.split("://", 1)[0].lower()
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return BrokerAddress(endpoint.host, endpoint.port, f"{scheme}://{host}:{endpoint.port}{endpoint.ws_path or ''}")


def make_users(settings: Settings, store: Store, activity: ActivityLog, clock: Clock) -> Users:
    tokens = Tokens(settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience, settings.jwt_ttl_seconds)
    return Users(store.users, Passwords(), tokens, activity, clock, min_password_length=settings.password_min_length)


async def create_admin(settings: Settings, email: str, password: str, username: str) -> str:
    """`python -m server create-admin`: create or promote an admin in the configured store."""
    store = await open_store(settings.mongo_uri or None, settings.data_dir)
    try:
        clock = SystemClock()
        users = make_users(settings, store, ActivityLog(store.activity, clock), clock)
        return (await users.ensure_admin(email, password, username)).user_id
    finally:
        await store.close()


class ControlPlane:
    def __init__(
        self,
        settings: Settings,
        servicer_overrides: dict[str, Any] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        # Transport-level tests swap in a servicer by full service name; production passes none.
        self._overrides = dict(servicer_overrides or {})
        self.clock = clock or SystemClock()
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._link_changed = asyncio.Event()
        self._health_follower: asyncio.Task[None] | None = None
        self._store: Store | None = None
        self.port = 0
        # The device side: present once built; the MQTT parts only when MQTT_URL is set.
        self.device_events = DeviceEventHub(on_drop=metrics.DEVICE_EVENTS_DROPPED.inc)
        # Honest presence: follows the bridge's link (unknown until it first connects). Without
        # MQTT nothing reports presence, and the store's "offline" is simply true.
        self.presence = PresenceView(
            self.clock,
            settings.offline_after_seconds + sweep_interval(settings.offline_after_seconds),
            tracking=bool(settings.mqtt_url),
        )
        self.bridge: MqttBridge | None = None
        self.broker_admin: DynsecBrokerAdmin | None = None
        self.sweeper: OfflineSweeper | None = None
        self.metrics_server: metrics.MetricsServer | None = None
        self.heartbeat_writer: HeartbeatWriter | None = None
        # OTA: the firmware catalog (S3 or the local store, whose downloads we serve) and jobs.
        self.ota_events = OtaEventHub(on_drop=metrics.OTA_EVENTS_DROPPED.inc)
        self.catalog: FirmwareCatalog | None = None
        self.firmware_http: FirmwareHttpServer | None = None
        self.ota: OtaJobs | None = None
        self.rollout_scheduler: RolloutScheduler | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the control plane is not started")
        return self._store

    async def _build(self) -> tuple[dict[str, Any], Authorizer]:
        """Adapters -> core -> servicers. Returns the servicer per service and the access check."""
        s = self.settings
        self._store = store = await open_store(s.mongo_uri or None, s.data_dir)
        self.activity = activity = ActivityLog(store.activity, self.clock)
        self.users = users = make_users(s, store, activity, self.clock)
        if s.admin_email:
            admin = await users.ensure_admin(s.admin_email, s.admin_password, s.admin_username)
            log.info("admin account ready", extra={"user_id": admin.user_id})
        self.catalog = catalog = self._build_catalog()
        self.devices = devices = await self._build_devices(store, activity, catalog)
        assert self.ota is not None
        self.rollouts = rollouts = Rollouts(
            store.rollouts, store.ota_jobs, store.devices, self.ota, catalog, activity, self.clock
        )
        # Every replica runs it; the store's compare-and-sets keep them from doubling work.
        self.rollout_scheduler = RolloutScheduler(rollouts)
        self.rollout_scheduler.start()
        ota_status = LatestOtaStatus(store.ota_jobs)
        servicers: dict[str, Any] = {
            "iot.v1.AuthService": AuthServicer(users),
            "iot.v1.AdminService": AdminServicer(users, activity, devices, ota_status, self.presence),
            "iot.v1.DeviceService": DeviceServicer(devices, self.led, ota_status, self.presence),
            "iot.v1.DashboardService": DashboardServicer(Dashboard(store, ota_status, self.presence)),
            "iot.v1.OtaService": OtaServicer(self.ota),
            "iot.v1.ReleaseService": ReleaseServicer(Releases(catalog, activity, self.clock)),
            "iot.v1.RolloutService": RolloutServicer(rollouts),
        }
        return servicers, PolicyAuthorizer(users)

    def _build_catalog(self) -> FirmwareCatalog:
        """S3 when S3_BUCKET is set, else the local folder, whose signed download URLs this
        process serves on FIRMWARE_HTTP_PORT."""
        s = self.settings
        public_key = load_public_key(s.firmware_public_key.encode()) if s.firmware_public_key else None
        if s.s3_bucket:
            from server.firmware.s3 import S3Catalog, make_client  # boto3 loads only when used

            client = make_client(s.aws_region, s.aws_endpoint_url, s.aws_access_key_id, s.aws_secret_access_key)
            log.info("firmware catalog", extra={"store": f"s3://{s.s3_bucket}/{s.s3_prefix}"})
            return S3Catalog(
                client, s.s3_bucket, s.s3_prefix, public_key=public_key, cache_seconds=s.firmware_cache_seconds
            )
        root = s.firmware_root
        root.mkdir(parents=True, exist_ok=True)
        signer = UrlSigner(derive_url_key(s.firmware_url_key or s.jwt_secret))
        self.firmware_http = FirmwareHttpServer(s.grpc_host, s.firmware_http_port, root, signer)
        port = self.firmware_http.start()
        host = "127.0.0.1" if s.grpc_host in ("", "0.0.0.0", "::") else s.grpc_host  # noqa: S104
        base = s.firmware_public_url or f"http://{host}:{port}"
        log.info("firmware catalog", extra={"store": str(root), "downloads": base, "port": port})
        return LocalCatalog(root, signer, base, public_key=public_key, cache_seconds=s.firmware_cache_seconds)

    async def _build_devices(self, store: Store, activity: ActivityLog, catalog: FirmwareCatalog) -> DeviceRegistry:
        """Devices over MQTT: provisioning, the bridge, LED commands, OTA jobs, the inbound
        handler, the sweeps, the metrics endpoint. The bridge comes first: core publishes
        through it, and it delivers to core once started."""
        s = self.settings
        if s.metrics_port > 0:
            self.metrics_server = metrics.MetricsServer(s.grpc_host, s.metrics_port)
            port = self.metrics_server.start()
            log.info("metrics serving", extra={"address": f"{s.grpc_host}:{port}"})
        address = broker_address(s) if s.mqtt_url else None
        if address is not None:
            self.broker_admin = DynsecBrokerAdmin(
                s.mqtt_url,
                s.mqtt_user or None,
                s.mqtt_pass or None,
                device_host=address.host,
                device_port=address.port,
                reserved_usernames=RESERVED_BROKER_USERNAMES,
            )
            self.bridge = MqttBridge(
                s.mqtt_url,
                s.mqtt_user or None,
                s.mqtt_pass or None,
                share_group=s.mqtt_share_group,
                clock=self.clock,
                on_link=self._on_mqtt_link,
            )
        self.heartbeat_writer = HeartbeatWriter(store.devices, interval=s.heartbeat_flush_seconds)
        await self.heartbeat_writer.start()
        changes = DeviceChanges(activity, self.clock, self.device_events)
        devices = DeviceRegistry(
            store.devices, activity, self.clock, changes, broker=self.broker_admin, address=address
        )
        self.led = led = LedCommands(
            store.devices,
            devices,
            activity,
            self.clock,
            publisher=self.bridge,
            command_timeout=s.command_timeout_seconds,
        )
        self.ota = ota = OtaJobs(
            store.ota_jobs,
            devices,
            catalog,
            activity,
            self.clock,
            self.ota_events,
            publisher=self.bridge,
            url_ttl_seconds=s.firmware_url_ttl_seconds,
            job_timeout_seconds=s.ota_job_timeout_seconds,
            on_rejected=lambda reason: metrics.OTA_REPORTS_REJECTED.labels(reason).inc(),
        )
        self.inbound = inbound = DeviceInbound(
            store.devices, self.clock, changes, heartbeats=self.heartbeat_writer, commands=led, ota=ota
        )
        if self.bridge is not None and await self.bridge.start(inbound, wait=MQTT_START_WAIT_SECONDS):
            await self._bind_device_client_ids()
        await ota.start()
        self.sweeper = OfflineSweeper(
            store.devices,
            self.clock,
            s.offline_after_seconds,
            inbound.on_swept_offline,
            on_online_count=metrics.DEVICES_ONLINE.set,
        )
        self.sweeper.start()
        return devices

    async def _bind_device_client_ids(self) -> None:
        """Accounts provisioned before device accounts were bound to their client ids get the
        binding now. Best effort: a broker that refuses leaves them as they were, said in the log."""
        assert self.broker_admin is not None
        try:
            bound = await self.broker_admin.bind_device_client_ids()
        except DomainError as exc:
            log.warning("device accounts not bound to their client ids: %s", exc)
            return
        if bound:
            log.info("device accounts bound to their client ids", extra={"count": bound})

    async def start(self) -> int:
        try:
            servicers, authorizer = await self._build()
        except BaseException:
            await self._close_adapters()
            raise
        server = grpc.aio.server(
            interceptors=(CallInterceptor(authorizer, self.settings.trusted_proxies),),
            options=(
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
                # Keep idle streams (watches, Envoy's upstream connections) healthy.
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ),
        )
        implemented = {**servicers, **self._overrides}
        spec: ServiceSpec
        for spec in SERVICES:
            # The generated base servicer raises NotImplementedError: the interceptor answers
            # UNIMPLEMENTED with the RPC's name, never a fake success.
            servicer = implemented.get(spec.full_name) or spec.base()
            spec.add_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [spec.full_name for spec in SERVICES]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
        )
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC on {address}")
        await server.start()
        self._server = server
        for name in ["", *names]:
            if self.bridge is None or name not in MQTT_DEPENDENT_SERVICES:
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.bridge is not None:
            await self._sync_health(None)
            self._health_follower = asyncio.create_task(self._follow_mqtt_link(), name="health-follows-mqtt")
        log.info("grpc serving", extra={"address": f"{self.settings.grpc_host}:{self.port}"})
        return self.port

    # ---- health follows the MQTT link ------------------------------------------------------

    def _on_mqtt_link(self, up: bool) -> None:
        """The bridge's callback, called in its task the moment the link goes up or down (before
        any message of a new connection is handled, so re-learning starts from the right time)."""
        if up:
            self.presence.link_up()
        else:
            self.presence.link_down()
        self._link_changed.set()

    async def _sync_health(self, serving: bool | None) -> bool:
        """Set the MQTT-dependent services' health to the link's state now; returns that state."""
        up = self.bridge is not None and self.bridge.is_connected
        if up != serving:
            status = health_pb2.HealthCheckResponse.SERVING if up else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in MQTT_DEPENDENT_SERVICES:
                await self._health.set(name, status)
            if not up:
                log.warning("MQTT link down: health NOT_SERVING until the bridge hears devices again")
            elif serving is not None:
                log.info("MQTT link up again: health SERVING")
        return up

    async def _follow_mqtt_link(self) -> None:
        # Reads the state after each wake-up rather than trusting the callback's argument, so
        # a quick down-up never leaves health behind the link.
        serving = self.bridge is not None and self.bridge.is_connected
        while True:
            await self._link_changed.wait()
            self._link_changed.clear()
            serving = await self._sync_health(serving)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float | None = None) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        failed = 0
        # Tell load balancers first, so no new calls are routed here while we drain.
        failed += not await _step("health", self._health.enter_graceful_shutdown)
        follower, self._health_follower = self._health_follower, None
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

        async def close_streams() -> None:
            self.device_events.close()  # watch streams end now rather than at the grace deadline
            self.ota_events.close()

        failed += not await _step("event streams", close_streams)
        failed += not await _step("grpc server", lambda: server.stop(grace))
        failed += await self._close_adapters()
        if failed:
            log.error("stopped with %d failed shutdown step(s); see the errors above", failed)
        else:
            log.info("grpc stopped")

    async def _close_adapters(self) -> int:
        """Close what _build opened; every step runs even if one fails. Returns the failures."""
        # Reverse order of _build: no more sweeps or device messages, then broker connections,
        # then the store last (pending heartbeat writes need it). Rollouts first: they start jobs.
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if self.rollout_scheduler is not None:
            steps.append(("rollout scheduler", self.rollout_scheduler.stop))
        if self.sweeper is not None:
            steps.append(("offline sweeper", self.sweeper.stop))
        if self.ota is not None:
            steps.append(("ota jobs", self.ota.stop))
        if self.bridge is not None:
            steps.append(("mqtt bridge", self.bridge.stop))
        if self.heartbeat_writer is not None:
            steps.append(("heartbeat writer", self.heartbeat_writer.stop))  # flushes what the bridge handed over
        if self.broker_admin is not None:
            steps.append(("broker admin", self.broker_admin.close))
        if (metrics_server := self.metrics_server) is not None:
            steps.append(("metrics server", lambda: asyncio.to_thread(metrics_server.stop)))
        if self.catalog is not None:
            steps.append(("firmware catalog", self.catalog.close))
        if (firmware_http := self.firmware_http) is not None:
            steps.append(("firmware downloads", lambda: asyncio.to_thread(firmware_http.stop)))
        if self._store is not None:
            steps.append(("store", self._store.close))
        self.rollout_scheduler = self.sweeper = self.ota = self.bridge = None
        self.heartbeat_writer = self.broker_admin = self.metrics_server = None
        self.catalog = self.firmware_http = self._store = None
        failed = 0
        for name, close in steps:
            failed += not await _step(name, close)
        return failed


async def _step(name: str, run: Callable[[], Awaitable[object]]) -> bool:
    """One shutdown step: True if it completed; a failure is logged and the next step still runs."""
    try:
        await run()
    except Exception:
        log.exception("shutdown step failed: %s", name, extra={"step": name})
        return False
    return True
