"""The product's errors, defined once.

Core code and adapters raise these; one interceptor (server/api/interceptors.py) maps each to
its gRPC status code, which Envoy maps to HTTP. Nothing else decides status codes, and no
driver exception (sqlite3, pymongo, boto3, MQTT) travels past the adapter that caught it.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller is meant to see; `message` is safe to show to clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """The request itself is wrong (bad field, bad format); retrying it unchanged won't help."""


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it exists (tenant isolation)."""


class AlreadyExists(DomainError):
    """A unique key is taken (email, username, deviceId)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class FailedPrecondition(DomainError):
    """The system is not in a state that allows this (illegal state transition, device offline)."""


class Conflict(FailedPrecondition):
    """A compare-and-set lost: the record changed since it was read. Re-read and retry."""


class Unauthenticated(DomainError):
    """No valid credentials (missing, expired, tampered or revoked token; wrong password)."""


class PermissionDenied(DomainError):
    """Authenticated, but not allowed (wrong role, blocked account)."""


class ResourceExhausted(DomainError):
    """Rate limited or over a quota; `retry_after` seconds is a hint for the client."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (database, broker, object store) is down or timed out; safe to retry."""


class DeadlineExceeded(DomainError):
    """A wait ran out (e.g. a device did not acknowledge a command in time)."""


class Unimplemented(DomainError):
    """The RPC exists in the contract but its behaviour has not been built yet."""
