"""Brute-force protection for logins, per account and per client address.

After a few free failures, each further failure doubles the wait before the next attempt is
even considered (capped). A success clears the account's record. State is in memory, per
replica: behind a load balancer an attacker gets at most (replicas x allowance), which the
exponential wait still makes useless; a shared store would be the next step at large scale.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from server.core.errors import ResourceExhausted


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int  # failures allowed before any wait
    base_delay_seconds: float
    max_delay_seconds: float
    forget_after_seconds: float  # a record this old (since the last failure) starts over


ACCOUNT_POLICY = ThrottlePolicy(free_failures=5, base_delay_seconds=1, max_delay_seconds=900, forget_after_seconds=3600)
ADDRESS_POLICY = ThrottlePolicy(
    free_failures=20, base_delay_seconds=1, max_delay_seconds=900, forget_after_seconds=3600
)


@dataclass
class _Record:
    failures: int
    last_failure: datetime


class FailureThrottle:
    """Counts failures per key; bounded memory (least recently failed keys are forgotten first)."""

    def __init__(self, policy: ThrottlePolicy, max_keys: int = 100_000) -> None:
        self._policy = policy
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._max_keys = max_keys

    def retry_after(self, key: str, now: datetime) -> float:
        """Seconds the caller must still wait; 0 when an attempt is allowed now."""
        record = self._records.get(key)
        if record is None:
            return 0.0
        since = (now - record.last_failure).total_seconds()
        if since >= self._policy.forget_after_seconds:
            del self._records[key]
            return 0.0
        over = record.failures - self._policy.free_failures
        if over < 0:
            return 0.0
        delay = min(self._policy.base_delay_seconds * float(2**over), self._policy.max_delay_seconds)
        return max(0.0, delay - since)

    def failed(self, key: str, now: datetime) -> None:
        record = self._records.pop(key, None)
        if record is None or (now - record.last_failure).total_seconds() >= self._policy.forget_after_seconds:
            record = _Record(0, now)
        record.failures += 1
        record.last_failure = now
        self._records[key] = record
        while len(self._records) > self._max_keys:
            self._records.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._records.pop(key, None)


class LoginThrottle:
    def __init__(self, account: ThrottlePolicy = ACCOUNT_POLICY, address: ThrottlePolicy = ADDRESS_POLICY) -> None:
        self._accounts = FailureThrottle(account)
        self._addresses = FailureThrottle(address)

    def check(self, email: str, address: str, now: datetime) -> None:
        wait = max(self._accounts.retry_after(email, now), self._addresses.retry_after(address, now) if address else 0)
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed logins; retry in {max(1, round(wait))}s", retry_after=max(1.0, wait)
            )

    def failed(self, email: str, address: str, now: datetime) -> None:
        self._accounts.failed(email, now)
        if address:
            self._addresses.failed(address, now)

    def succeeded(self, email: str) -> None:
        self._accounts.succeeded(email)
