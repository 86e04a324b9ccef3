"""Ed25519 release signatures.

The signed message is the firmware's raw 32-byte SHA-256 digest: a device that has
hashed the download verifies one 64-byte signature against the public key it was
built with, without parsing JSON. Ed25519 is deterministic, so re-signing the same
digest with the same key yields the same bytes, which keeps builds reproducible.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    from firmware_tools.release import ReleaseMetadata

ALGORITHM = "ed25519"
ENV_KEY_PEM = "FIRMWARE_SIGNING_KEY"
ENV_KEY_FILE = "FIRMWARE_SIGNING_KEY_FILE"
ENV_PUBLIC_KEY_FILE = "FIRMWARE_PUBLIC_KEY_FILE"


class SigningError(ValueError):
    pass


def generate_key_pair() -> tuple[bytes, bytes]:
    """Return (private PEM, public PEM) for a fresh key."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_pem(key.public_key())


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint naming the key a release was signed with."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(pem: bytes, source: str = "the signing key") -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{source} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{source} is not an Ed25519 key (got {type(key).__name__})")
    return key


def load_public_key(pem: bytes, source: str = "the public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{source} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{source} is not an Ed25519 public key (got {type(key).__name__})")
    return key


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def resolve_private_key(path: str | None, env: Mapping[str, str] = os.environ) -> Ed25519PrivateKey:
    """The signing key from ``--key FILE``, else FIRMWARE_SIGNING_KEY, else ..._FILE."""
    if path:
        return load_private_key(_read(path, "signing key"), f"signing key {path}")
    if env.get(ENV_KEY_PEM):
        return load_private_key(env[ENV_KEY_PEM].encode(), ENV_KEY_PEM)
    if env.get(ENV_KEY_FILE):
        file = env[ENV_KEY_FILE]
        return load_private_key(_read(file, "signing key"), f"signing key {file}")
    raise SigningError(
        f"no signing key: pass --key FILE or set {ENV_KEY_PEM} (PEM text) or {ENV_KEY_FILE}"
        " (make one with `python -m firmware_tools keygen`)"
    )


def resolve_public_key(path: str | None, env: Mapping[str, str] = os.environ) -> Ed25519PublicKey | None:
    file = path or env.get(ENV_PUBLIC_KEY_FILE)
    if not file:
        return None
    return load_public_key(_read(file, "public key"), f"public key {file}")


def sign_digest(key: Ed25519PrivateKey, sha256_hex: str) -> str:
    return base64.b64encode(key.sign(bytes.fromhex(sha256_hex))).decode("ascii")


def verify_digest(public_key: Ed25519PublicKey, sha256_hex: str, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        digest = bytes.fromhex(sha256_hex)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(signature, digest)
    except InvalidSignature:
        return False
    return True


def verify_signature(metadata: ReleaseMetadata, public_key: Ed25519PublicKey) -> bool:
    """True when ``metadata.signature`` is ``public_key``'s signature of its SHA-256."""
    if metadata.signature_algorithm != ALGORITHM:
        return False
    return verify_digest(public_key, metadata.sha256, metadata.signature)
