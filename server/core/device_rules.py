"""What a valid device registration is, and how its broker password is kept."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from server.core.errors import InvalidArgument

DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME = 64
PLATFORMS = frozenset({"esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c2", "esp32c6", "esp32h2"})
DEFAULT_PLATFORM = "esp32s3"


def validate_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.fullmatch(device_id):
        # Also keeps MQTT wildcards (+ #) and separators (/) out of topic names and ACLs.
        raise InvalidArgument("deviceId must be 1-64 characters of letters, digits, '_' and '-'")
    return device_id


def validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise InvalidArgument(f"name must be 1-{MAX_NAME} printable characters")
    return name


def validate_platform(platform: str) -> str:
    platform = platform.strip().lower() or DEFAULT_PLATFORM
    if platform not in PLATFORMS:
        raise InvalidArgument(f"platform must be one of {', '.join(sorted(PLATFORMS))}")
    return platform


def hash_credential(password: str) -> str:
    """A salted SHA-256, deliberately fast. The broker holds the verifier devices are checked
    against; ours only lets an operator confirm a password and proves what was issued. The
    password is 192 random bits, so a slow KDF would add cost and no protection."""
    salt = secrets.token_bytes(16)
    return f"sha256${salt.hex()}${hashlib.sha256(salt + password.encode()).hexdigest()}"


def credential_matches(stored: str, password: str) -> bool:
    try:
        scheme, salt_hex, digest = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    expected = hashlib.sha256(salt + password.encode()).hexdigest()
    return scheme == "sha256" and hmac.compare_digest(expected, digest)
