"""Configuration, parsed once from the environment into one typed object and validated at start.

The seed's variable names are kept (PORT, MONGO_URI, JWT_SECRET, MQTT_WS_URL, MQTT_USER, ...).
Nothing reads os.environ at import time: `Settings.from_env(environ)` takes the mapping, so
tests pass their own. Every problem is reported at once, with the variable's name.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Secrets that appear in the seed README or in tutorials: never acceptable in production.
KNOWN_DEFAULT_SECRETS = frozenset(
    {"", "supersecret", "secret", "changeme", "change-me", "jwt_secret", "your-secret", "dev"}
)
MQTT_SCHEMES = ("mqtt", "mqtts", "tcp", "ssl", "ws", "wss")
# Envoy, as `make run` starts it, reaches the gRPC server over loopback.
DEFAULT_TRUSTED_PROXIES = "127.0.0.0/8,::1"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# Below this many bits, estimated from the secret's own character frequencies, a secret is
# refused. The estimate undercounts random text (32 random hex digits, 128 real bits, score
# 90-125), so the bar sits under that while 32 x 'a' (0) or 'ab' x 16 (32) are far below it.
MIN_SECRET_BITS = 80


def secret_weakness(secret: str) -> str:
    """Why `secret` is guessable, or "" when it looks random. Length is checked elsewhere."""
    n = len(secret)
    # A repeated block ("password1234password1234...") is as strong as the block alone.
    for period in range(1, n // 2 + 1):
        if secret[period:] == secret[:-period]:
            return f"it repeats a {period}-character block"
    # Runs like "abcdef..." or "0123...": most neighbours one code point apart.
    steps = sum(1 for a, b in itertools.pairwise(secret) if abs(ord(a) - ord(b)) <= 1)
    if steps * 2 > n - 1:
        return "it is mostly runs of neighbouring characters"
    counts = [secret.count(ch) for ch in set(secret)]
    bits = -sum(c * math.log2(c / n) for c in counts)
    if bits < MIN_SECRET_BITS:
        return f"about {bits:.0f} bits of entropy, {MIN_SECRET_BITS} needed"
    return ""


class SettingsError(ValueError):
    """One or more configuration problems; the message lists every one of them."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    port: int = 3000
    grpc_host: str = "0.0.0.0"  # noqa: S104 - a server is meant to be reachable; override with GRPC_HOST
    grpc_port: int = 50051
    data_dir: Path = Path("data")
    mongo_uri: str = ""
    jwt_secret: str = field(default="", repr=False)
    jwt_secret_generated: bool = False
    jwt_ttl_seconds: int = 3600
    jwt_issuer: str = "esp32-fleet-control-plane"
    jwt_audience: str = "esp32-fleet-api"
    password_min_length: int = 8
    mqtt_url: str = ""
    # Empty: use the credentials in MQTT_URL (mqtt://user:pass@host), if any.
    mqtt_user: str = ""
    mqtt_pass: str = field(default="", repr=False)
    mqtt_share_group: str = "control-plane"
    mqtt_public_url: str = ""
    aws_region: str = ""
    aws_endpoint_url: str = ""
    # Empty: boto3's usual chain (its own environment lookup, profile, instance role).
    aws_access_key_id: str = ""
    aws_secret_access_key: str = field(default="", repr=False)
    s3_bucket: str = ""
    s3_prefix: str = ""
    firmware_url_ttl_seconds: int = 900
    # The local firmware store (used when S3_BUCKET is unset); default DATA_DIR/firmware.
    firmware_dir: Path | None = None
    firmware_http_port: int = 3001
    firmware_public_url: str = ""
    firmware_url_key: str = field(default="", repr=False)
    # PEM text of the release signing public key; empty: signatures are not checked.
    firmware_public_key: str = ""
    firmware_cache_seconds: float = 5.0
    heartbeat_interval_seconds: float = 30.0
    offline_after_seconds: float = 90.0
    heartbeat_flush_seconds: float = 1.0
    command_timeout_seconds: float = 5.0
    ota_job_timeout_seconds: float = 1800.0
    admin_email: str = ""
    admin_password: str = field(default="", repr=False)
    admin_username: str = "admin"
    metrics_port: int = 0
    # Peers whose X-Forwarded-For names the client (the REST front); anyone else's is ignored.
    trusted_proxies: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1"))
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def firmware_root(self) -> Path:
        return self.firmware_dir if self.firmware_dir is not None else self.data_dir / "firmware"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def text(name: str, default: str = "") -> str:
            return env.get(name, default).strip()

        def number(name: str, default: float, low: float, high: float, kind: type = int) -> float:
            raw = text(name)
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}")
                return default
            if not low <= value <= high:
                problems.append(f"{name}={raw} is out of range [{low:g}, {high:g}]")
                return default
            return float(value) if kind is float else value

        def port(name: str, default: int) -> int:
            return int(number(name, default, 0, 65535))

        mode = (text("ENV") or text("NODE_ENV") or "development").lower()
        if mode not in ("production", "development", "test"):
            problems.append(f"ENV/NODE_ENV={mode!r} must be production, development or test")

        jwt_secret = text("JWT_SECRET")
        generated = False
        if mode == "production":
            if jwt_secret.lower() in KNOWN_DEFAULT_SECRETS:
                problems.append(
                    "JWT_SECRET must be set to a strong secret in production (it is unset or a known default)"
                )
            elif len(jwt_secret) < 32:
                problems.append("JWT_SECRET must be at least 32 characters in production")
            elif weakness := secret_weakness(jwt_secret):
                problems.append(
                    f"JWT_SECRET is too predictable for production ({weakness}); generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
        elif not jwt_secret:
            # Development only: tokens die with the process, which is what a developer expects.
            jwt_secret = secrets.token_urlsafe(48)
            generated = True

        mqtt_url = text("MQTT_URL") or text("MQTT_WS_URL")
        if mqtt_url:
            parts = urlsplit(mqtt_url)
            if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
                problems.append(
                    f"MQTT_URL={mqtt_url!r} must look like mqtt://host:1883 (schemes: {', '.join(MQTT_SCHEMES)})"
                )

        admin_email, admin_password = text("ADMIN_EMAIL"), env.get("ADMIN_PASSWORD", "")
        if bool(admin_email) != bool(admin_password):
            problems.append("ADMIN_EMAIL and ADMIN_PASSWORD must be set together")

        public_key, firmware_public_url, url_key = _firmware_settings(env, problems)

        offline_default = 3 * number("HEARTBEAT_INTERVAL_SECONDS", 30.0, 0.1, 86400, float)
        settings = cls(
            env=mode,
            port=port("PORT", 3000),
            grpc_host=text("GRPC_HOST", "0.0.0.0") or "0.0.0.0",  # noqa: S104
            grpc_port=port("GRPC_PORT", 50051),
            data_dir=Path(text("DATA_DIR") or "data"),
            mongo_uri=text("MONGO_URI"),
            jwt_secret=jwt_secret,
            jwt_secret_generated=generated,
            jwt_ttl_seconds=int(number("JWT_TTL_SECONDS", 3600, 60, 86400)),
            password_min_length=int(number("PASSWORD_MIN_LENGTH", 8, 8, 1024)),
            mqtt_url=mqtt_url,
            mqtt_user=text("MQTT_USER"),
            mqtt_pass=env.get("MQTT_PASS", ""),
            mqtt_share_group=text("MQTT_SHARE_GROUP", "control-plane") or "control-plane",
            mqtt_public_url=text("MQTT_PUBLIC_URL"),
            aws_region=text("AWS_REGION"),
            aws_endpoint_url=text("AWS_ENDPOINT_URL"),
            aws_access_key_id=text("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
            s3_bucket=text("S3_BUCKET"),
            s3_prefix=text("S3_PREFIX").strip("/"),
            firmware_url_ttl_seconds=int(number("FIRMWARE_URL_TTL_SECONDS", 900, 30, 7 * 86400)),
            firmware_dir=Path(text("FIRMWARE_DIR")) if text("FIRMWARE_DIR") else None,
            firmware_http_port=port("FIRMWARE_HTTP_PORT", 3001),
            firmware_public_url=firmware_public_url,
            firmware_url_key=url_key,
            firmware_public_key=public_key,
            firmware_cache_seconds=number("FIRMWARE_CACHE_SECONDS", 5.0, 0, 3600, float),
            heartbeat_interval_seconds=number("HEARTBEAT_INTERVAL_SECONDS", 30.0, 0.1, 86400, float),
            offline_after_seconds=number("OFFLINE_AFTER_SECONDS", offline_default, 0.1, 7 * 86400, float),
            heartbeat_flush_seconds=number("HEARTBEAT_FLUSH_SECONDS", 1.0, 0.01, 60, float),
            command_timeout_seconds=number("COMMAND_TIMEOUT_SECONDS", 5.0, 0.1, 120, float),
            ota_job_timeout_seconds=number("OTA_JOB_TIMEOUT_SECONDS", 1800.0, 1, 7 * 86400, float),
            admin_email=admin_email,
            admin_password=admin_password,
            admin_username=text("ADMIN_USERNAME", "admin") or "admin",
            metrics_port=port("METRICS_PORT", 0),
            trusted_proxies=_trusted_proxies(env, problems),
            shutdown_grace_seconds=number("SHUTDOWN_GRACE_SECONDS", 10.0, 0, 600, float),
            log_level=(text("LOG_LEVEL", "INFO") or "INFO").upper(),
        )
        if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append(f"LOG_LEVEL={settings.log_level!r} must be DEBUG, INFO, WARNING or ERROR")
        if problems:
            raise SettingsError("invalid configuration:\n  - " + "\n  - ".join(problems))
        return settings


def _trusted_proxies(env: Mapping[str, str], problems: list[str]) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES: comma-separated addresses or CIDR blocks, or `none`."""
    raw = env.get("TRUSTED_PROXIES", DEFAULT_TRUSTED_PROXIES).strip() or DEFAULT_TRUSTED_PROXIES
    if raw.lower() == "none":
        return ()
    networks: list[IPNetwork] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            problems.append(f"TRUSTED_PROXIES entry {item!r} is not an IP address or CIDR block")
    return tuple(networks)


def _firmware_settings(env: Mapping[str, str], problems: list[str]) -> tuple[str, str, str]:
    """FIRMWARE_PUBLIC_KEY(_FILE), FIRMWARE_PUBLIC_URL, FIRMWARE_URL_KEY, checked at start-up."""
    public_key = env.get("FIRMWARE_PUBLIC_KEY", "").strip()
    key_file = env.get("FIRMWARE_PUBLIC_KEY_FILE", "").strip()
    if key_file and not public_key:
        try:
            public_key = Path(key_file).read_text()
        except OSError as exc:
            problems.append(f"FIRMWARE_PUBLIC_KEY_FILE={key_file!r} cannot be read: {exc.strerror or exc}")
    if public_key:
        from firmware_tools.signing import SigningError, load_public_key

        try:
            load_public_key(public_key.encode(), "FIRMWARE_PUBLIC_KEY(_FILE)")
        except SigningError as exc:
            problems.append(str(exc))
            public_key = ""
    public_url = env.get("FIRMWARE_PUBLIC_URL", "").strip().rstrip("/")
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"FIRMWARE_PUBLIC_URL={public_url!r} must look like https://host[:port]")
    url_key = env.get("FIRMWARE_URL_KEY", "")
    if url_key and len(url_key) < 32:
        problems.append("FIRMWARE_URL_KEY must be at least 32 characters")
    return public_key, public_url, url_key
