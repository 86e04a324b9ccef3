"""Broker URLs and aiomqtt client construction, shared by the bridge and the provisioner."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_SCHEMES: dict[str, tuple[Literal["tcp", "websockets"], bool, int]] = {
    # scheme: (transport, tls, default port)
    "mqtt": ("tcp", False, 1883),
    "tcp": ("tcp", False, 1883),
    "mqtts": ("tcp", True, 8883),
    "ssl": ("tcp", True, 8883),
    "ws": ("websockets", False, 80),
    "wss": ("websockets", True, 443),
}


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    host: str
    port: int
    transport: Literal["tcp", "websockets"]
    tls: bool
    ws_path: str | None
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> BrokerEndpoint:
    """`mqtt://`, `mqtts://`, `ws://`, `wss://` (MQTT_WS_URL in the seed) -> endpoint.

    Credentials in the URL (`mqtt://user:pass@host`) are honoured when none are given apart.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(f"unsupported MQTT URL {url!r}: use mqtt://, mqtts://, ws:// or wss://")
    transport, tls, default_port = _SCHEMES[scheme]
    ws_path = None
    if transport == "websockets":
        ws_path = parts.path or "/mqtt"
    return BrokerEndpoint(
        host=parts.hostname,
        port=parts.port or default_port,
        transport=transport,
        tls=tls,
        ws_path=ws_path,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def make_client(
    endpoint: BrokerEndpoint,
    *,
    username: str | None,
    password: str | None,
    identifier: str,
    timeout: float,
    keepalive: int = 30,
    tls_context: ssl.SSLContext | None = None,
    will: aiomqtt.Will | None = None,
    max_queued_incoming: int | None = None,
    logger: logging.Logger | None = None,
) -> aiomqtt.Client:
    """An MQTT 5 client with a clean session (subscriptions are re-made on every connect)."""
    if endpoint.tls and tls_context is None:
        tls_context = ssl.create_default_context()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    return aiomqtt.Client(
        endpoint.host,
        endpoint.port,
        username=username if username is not None else endpoint.username,
        password=password if password is not None else endpoint.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        transport=endpoint.transport,
        websocket_path=endpoint.ws_path,
        tls_context=tls_context if endpoint.tls else None,
        timeout=timeout,
        keepalive=keepalive,
        clean_start=True,
        properties=props,
        will=will,
        max_queued_incoming_messages=max_queued_incoming,
        logger=logger,
    )
