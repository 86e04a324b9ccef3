from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from firmware_tools.signing import (
    SigningError,
    generate_key_pair,
    key_id,
    load_public_key,
    resolve_private_key,
    resolve_public_key,
    sign_digest,
    verify_digest,
    verify_signature,
)

from .helpers import key_pair, private_key
from .test_release import meta

DIGEST = "ab" * 32


def test_signatures_are_deterministic_and_verify() -> None:
    key = private_key()
    assert sign_digest(key, DIGEST) == sign_digest(key, DIGEST)
    assert verify_digest(key.public_key(), DIGEST, sign_digest(key, DIGEST))


def test_tampered_hash_other_key_or_garbage_do_not_verify() -> None:
    metadata = meta()
    public = private_key().public_key()
    assert verify_signature(metadata, public)
    assert not verify_signature(replace(metadata, sha256="00" * 32), public)
    other = load_public_key(generate_key_pair()[1])
    assert not verify_signature(metadata, other)
    assert not verify_signature(replace(metadata, signature="not base64!"), public)
    assert not verify_signature(replace(metadata, signature_algorithm="rsa"), public)


def test_key_comes_from_file_then_env_pem_then_env_file(tmp_path: Path) -> None:
    private_pem, public_pem = key_pair()
    file = tmp_path / "k.pem"
    file.write_bytes(private_pem)
    expected = key_id(private_key().public_key())
    assert key_id(resolve_private_key(str(file), {}).public_key()) == expected
    env_pem = {"FIRMWARE_SIGNING_KEY": private_pem.decode()}
    assert key_id(resolve_private_key(None, env_pem).public_key()) == expected
    env_file = {"FIRMWARE_SIGNING_KEY_FILE": str(file)}
    assert key_id(resolve_private_key(None, env_file).public_key()) == expected
    pub = tmp_path / "k.pub"
    pub.write_bytes(public_pem)
    resolved = resolve_public_key(None, {"FIRMWARE_PUBLIC_KEY_FILE": str(pub)})
    assert resolved is not None and key_id(resolved) == expected
    assert resolve_public_key(None, {}) is None


def test_missing_or_wrong_keys_are_explained(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match="no signing key: pass --key FILE"):
        resolve_private_key(None, {})
    with pytest.raises(SigningError, match="cannot read signing key"):
        resolve_private_key(str(tmp_path / "absent.pem"), {})
    with pytest.raises(SigningError, match="not an unencrypted PEM private key"):
        resolve_private_key(None, {"FIRMWARE_SIGNING_KEY": "hello"})
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public_key(key_pair()[0])
