import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from server.auth.tokens import Tokens
from server.core.errors import Unauthenticated
from server.core.model import Role

SECRET = "s" * 64
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def tokens(ttl: int = 3600) -> Tokens:
    return Tokens(SECRET, "issuer", "audience", ttl)


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub": "u1",
        "role": "user",
        "iat": int(datetime.now(UTC).timestamp()),
        "exp": int((datetime.now(UTC) + timedelta(hours=1)).timestamp()),
        "jti": "j1",
        "iss": "issuer",
        "aud": "audience",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_round_trip_carries_user_role_and_expiry() -> None:
    t = tokens()
    now = datetime.now(UTC).replace(microsecond=0)
    decoded = t.verify(t.issue("u1", Role.ADMIN, now))
    assert (decoded.user_id, decoded.role) == ("u1", Role.ADMIN)
    assert decoded.expires_at - decoded.issued_at == timedelta(hours=1)
    assert decoded.token_id


def test_expired_token_is_refused() -> None:
    t = tokens(ttl=60)
    old = t.issue("u1", Role.USER, datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(Unauthenticated, match="expired"):
        t.verify(old)


def test_tampered_payload_is_refused() -> None:
    header, payload, signature = tokens().issue("u1", Role.USER, datetime.now(UTC)).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthenticated, match="invalid token"):
        tokens().verify(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused() -> None:
    unsigned = jwt.encode(claims(role="admin"), key="", algorithm="none")
    with pytest.raises(Unauthenticated):
        tokens().verify(unsigned)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_our_secret(alg: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens().verify(jwt.encode(claims(), SECRET, algorithm=alg))


def test_wrong_secret_audience_or_issuer_is_refused() -> None:
    for bad in (
        jwt.encode(claims(), "another secret of sufficient length!!", algorithm="HS256"),
        jwt.encode(claims(aud="other"), SECRET, algorithm="HS256"),
        jwt.encode(claims(iss="other"), SECRET, algorithm="HS256"),
    ):
        with pytest.raises(Unauthenticated):
            tokens().verify(bad)


@pytest.mark.parametrize("missing", ["sub", "role", "iat", "exp", "jti", "iss", "aud"])
def test_every_claim_is_required(missing: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens().verify(jwt.encode(claims(**{missing: None}), SECRET, algorithm="HS256"))


def test_unknown_role_and_garbage_are_refused() -> None:
    with pytest.raises(Unauthenticated):
        tokens().verify(jwt.encode(claims(role="root"), SECRET, algorithm="HS256"))
    for garbage in ("", "abc", "a.b.c", "Bearer x"):
        with pytest.raises(Unauthenticated):
            tokens().verify(garbage)
