"""Short-lived HS256 JWTs.

Only HS256 is accepted (never `none`, never an asymmetric algorithm whose public key could be
confused for our secret), and every registered claim we issue is required and checked:
sub, role, iat, exp, jti, iss, aud.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt

from server.core.errors import Unauthenticated
from server.core.model import Role
from server.ports.security import TokenClaims

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "role", "iat", "exp", "jti", "iss", "aud")


class Tokens:
    def __init__(self, secret: str, issuer: str, audience: str, ttl_seconds: int, leeway_seconds: int = 5) -> None:
        if not secret:
            raise ValueError("a JWT secret is required")
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._leeway = leeway_seconds

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    def issue(self, user_id: str, role: Role, now: datetime) -> str:
        claims = {
            "sub": user_id,
            "role": role.value,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self._ttl)).timestamp()),
            "jti": uuid.uuid4().hex,
            "iss": self._issuer,
            "aud": self._audience,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
            role = Role(claims["role"])
            if not isinstance(claims["sub"], str) or not claims["sub"]:
                raise Unauthenticated("invalid token: bad subject")
            # PyJWT compares iat/exp as numbers after int(), so a signed "exp": "1796000000" or
            # a year-30000 exp passes it and then broke the datetime conversion below (a 500).
            issued_at, expires_at = _instant(claims["iat"]), _instant(claims["exp"])
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError, OverflowError, OSError):
            # One message for every other failure: no oracle for what was wrong.
            raise Unauthenticated("invalid token") from None
        return TokenClaims(
            user_id=claims["sub"],
            role=role,
            token_id=str(claims["jti"]),
            issued_at=issued_at,
            expires_at=expires_at,
        )


def _instant(value: object) -> datetime:
    """A NumericDate claim as a datetime; ValueError unless it is a plain number in range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a NumericDate must be a number")
    return datetime.fromtimestamp(value, UTC)
