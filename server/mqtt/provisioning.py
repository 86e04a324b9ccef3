"""Per-device broker accounts through Mosquitto's dynamic-security plugin.

Each device gets a client named after its deviceId and a role `device-<id>` allowing publish and
subscribe on `devices/<id>/#` and nothing else (the plugin's default denies everything not
granted). The client may connect only with client id == deviceId, so no other account can take
over a device's session by reusing its client id. The commands are built in server/mqtt/dynsec.py;
they go to `$CONTROL/dynamic-security/v1` as JSON; the plugin answers on `.../response`, to every
subscriber at once, so each request carries correlationData and only its sender resolves it.

This uses its own connection rather than the bridge's. The bridge's client is busy with the
device firehose and reconnects on its own schedule; provisioning is rare, request/response, and
should fail fast (Unavailable) on its own timeout without waiting behind a queue of heartbeats.
Separate connections also let an operator give provisioning a different account (the dynsec
admin) than the one that reads device traffic. The connection is opened on first use and
re-opened after any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Iterable

import aiomqtt

from server.core.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable
from server.mqtt import dynsec
from server.mqtt.connection import make_client, parse_url
from server.mqtt.dynsec import DynsecError
from server.mqtt.topics import is_valid_device_id
from server.ports.broker import DeviceCredentials

log = logging.getLogger(__name__)


class DynsecBrokerAdmin:
    """Implements the BrokerAdmin port."""

    def __init__(
        self,
        url: str,
        username: str | None,
        password: str | None,
        *,
        device_host: str | None = None,
        device_port: int | None = None,
        reserved_usernames: Iterable[str] = (),
        timeout: float = 5.0,
        client_id_prefix: str = "control-plane-dynsec",
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._endpoint = parse_url(url)
        self._username = username
        self._password = password
        # Where devices connect may differ from where we do (a public name, a TLS port).
        self.device_host = device_host or self._endpoint.host
        self.device_port = device_port or self._endpoint.port
        # A device registered as "admin" or "backend" must not take over those accounts.
        self._reserved = {u for u in (*reserved_usernames, username) if u}
        self._timeout = timeout
        self._client_id_prefix = client_id_prefix
        self._tls_context = tls_context
        self._client: aiomqtt.Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[list[dynsec.Response]]] = {}
        self._connect_lock = asyncio.Lock()

    # ---- BrokerAdmin -----------------------------------------------------------------------

    async def create_device_client(self, device_id: str, password: str) -> DeviceCredentials:
        """Idempotent: an existing device client gets the new password, and its role and client-id
        binding repaired."""
        self._check_id(device_id)
        for attempt in range(2):
            try:
                await self._create_or_update(device_id, password)
                break
            except DynsecError as exc:
                # Lost a race with a concurrent create of the same device: the update path wins.
                if not exc.exists or attempt:
                    raise self._map(exc) from None
        return DeviceCredentials(device_id, password, self.device_host, self.device_port)

    async def set_device_enabled(self, device_id: str, enabled: bool) -> None:
        self._check_id(device_id)
        await self._call_one(dynsec.set_enabled(device_id, enabled))

    async def delete_device_client(self, device_id: str) -> None:
        self._check_id(device_id)
        for err in dynsec.errors(await self._call(dynsec.remove_device(device_id))):
            if not err.not_found:
                raise self._map(err)

    async def set_device_password(self, device_id: str, password: str) -> None:
        self._check_id(device_id)
        await self._call_one(dynsec.set_password(device_id, password))

    async def bind_device_client_ids(self) -> int:
        """Bind every device account made before client ids were bound; return how many.

        New and rotated accounts are bound by create_device_client. This catches the rest at
        start-up, in one listing and one batch, so an upgraded broker is not left open to
        client-id takeover until each device happens to be rotated. A device that connected
        with another client id is disconnected by the change and must reconnect with its id.
        """
        (listing,) = await self._call([dynsec.list_clients()])
        for err in dynsec.errors([listing]):
            raise self._map(err)
        commands = dynsec.bind_device_client_ids(listing)
        for err in dynsec.errors(await self._call(commands)):
            # Deleted between the listing and the change: nothing left to bind.
            if not err.not_found:
                raise self._map(err)
        return len(commands)

    async def close(self) -> None:
        await self._disconnect()

    # ---- device logic ----------------------------------------------------------------------

    def _check_id(self, device_id: str) -> None:
        if not is_valid_device_id(device_id):
            raise InvalidArgument(f"invalid device id {device_id!r}")
        if device_id in self._reserved:
            raise AlreadyExists(f"device id {device_id!r} is reserved", field="deviceId")

    async def _create_or_update(self, device_id: str, password: str) -> None:
        account = dynsec.device_account(device_id, password)
        role_r, client_r = await self._call(dynsec.look_up(account))
        try:
            commands = dynsec.ensure(account, role_r, client_r)
        except dynsec.ForeignAccount as exc:
            # Someone made this account by hand for another purpose: don't hijack it.
            raise AlreadyExists(str(exc), field="deviceId") from None
        dynsec.check(await self._call(commands))

    @staticmethod
    def _map(exc: DynsecError) -> Exception:
        if exc.not_found:
            return NotFound(f"no broker account: {exc.error}")
        if exc.exists:
            return AlreadyExists(f"broker: {exc.error}")
        return Unavailable(f"MQTT broker refused {exc.command}: {exc.error}")

    async def _call_one(self, command: dynsec.Command) -> dynsec.Response:
        (r,) = await self._call([command])
        for err in dynsec.errors([r]):
            raise self._map(err)
        return r

    # ---- request/response over $CONTROL ----------------------------------------------------

    async def _call(self, commands: list[dynsec.Command]) -> list[dynsec.Response]:
        """Send commands as one request; return the plugin's responses, one per command."""
        if not commands:
            return []
        client = await self._connect()
        corr = uuid.uuid4().hex
        future: asyncio.Future[list[dynsec.Response]] = asyncio.get_running_loop().create_future()
        self._pending[corr] = future
        try:
            async with asyncio.timeout(self._timeout):
                await client.publish(dynsec.TOPIC, dynsec.encode_request(commands, corr), qos=1, timeout=self._timeout)
                responses = await future
        except (TimeoutError, aiomqtt.MqttError) as exc:
            await self._disconnect()
            log.warning("dynamic-security request failed: %s", exc or type(exc).__name__)
            raise Unavailable("MQTT broker unavailable") from None
        finally:
            self._pending.pop(corr, None)
        if len(responses) != len(commands):
            raise Unavailable("MQTT broker gave an incomplete dynamic-security answer")
        return responses

    async def _connect(self) -> aiomqtt.Client:
        async with self._connect_lock:
            if self._client is not None and self._reader is not None and not self._reader.done():
                return self._client
            await self._disconnect()
            client = make_client(
                self._endpoint,
                username=self._username,
                password=self._password,
                identifier=f"{self._client_id_prefix}-{uuid.uuid4().hex[:12]}",
                timeout=self._timeout,
                tls_context=self._tls_context,
            )
            stack = contextlib.AsyncExitStack()
            try:
                await stack.enter_async_context(client)
                granted = await client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
                if any(getattr(rc, "is_failure", False) for rc in granted):
                    raise aiomqtt.MqttError(f"not allowed to subscribe to {dynsec.RESPONSE_TOPIC}")
            except aiomqtt.MqttError as exc:
                with contextlib.suppress(aiomqtt.MqttError):
                    await stack.aclose()
                log.warning("cannot open the dynamic-security connection: %s", exc)
                raise Unavailable("MQTT broker unavailable") from None
            self._client, self._stack = client, stack
            self._reader = asyncio.create_task(self._read(client), name="dynsec-reader")
            return client

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    continue
                answer = dynsec.decode_response(payload)
                future = self._pending.get(answer[0]) if answer is not None else None
                if answer is not None and future is not None and not future.done():
                    future.set_result(answer[1])
        except aiomqtt.MqttError:
            pass
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable("MQTT broker unavailable"))

    async def _disconnect(self) -> None:
        reader, stack = self._reader, self._stack
        self._client = self._reader = self._stack = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if stack is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await stack.aclose()
