"""Brute-force protection for logins that an attacker cannot turn into a lockout.

After a few free failures, each further failure doubles the wait before the next attempt is
even considered (capped). Failures are counted per (account, address) pair, so guessing from
one address slows that address down on that account and nobody else. Two wider counters keep
guessing from many addresses useless: one per address (spraying many accounts) and one per
account, shared by every address that has never logged in to it. An address that has logged in
to the account before is judged by its own failures only, with a softer limit: however many
addresses an attacker guesses from, the owner still gets in from where they usually do.

IPv6 addresses count per /64, the block one subscriber gets, so a fresh address per guess buys
nothing. State is in memory, per replica: behind a load balancer an attacker gets at most
(replicas x allowance), which the exponential wait still makes useless; a restart forgets
which addresses are known. A shared store would be the next step at large scale.
"""

from __future__ import annotations

import ipaddress
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


# One address guessing one account.
PAIR_POLICY = ThrottlePolicy(free_failures=5, base_delay_seconds=1, max_delay_seconds=900, forget_after_seconds=3600)
# An address the account has logged in from: the owner's own typos, judged more kindly.
KNOWN_PAIR_POLICY = ThrottlePolicy(
    free_failures=10, base_delay_seconds=1, max_delay_seconds=300, forget_after_seconds=3600
)
# One account, all addresses that never logged in to it together: a distributed guesser gets
# ten free tries, then one per doubling wait up to 15 minutes (under a hundred a day).
ACCOUNT_POLICY = ThrottlePolicy(
    free_failures=10, base_delay_seconds=1, max_delay_seconds=900, forget_after_seconds=3600
)
# One address, all accounts: password spraying.
ADDRESS_POLICY = ThrottlePolicy(
    free_failures=20, base_delay_seconds=1, max_delay_seconds=900, forget_after_seconds=3600
)
# How long a successful login keeps an address known to the account.
KNOWN_FOR_SECONDS = 90 * 86400


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


def address_key(address: str) -> str:
    """The unit an address is counted in: the address itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and not ip.is_loopback:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class KnownAddresses:
    """(account, address) pairs that logged in successfully; bounded, oldest forgotten first."""

    def __init__(self, remember_seconds: float = KNOWN_FOR_SECONDS, max_pairs: int = 200_000) -> None:
        self._seen: OrderedDict[tuple[str, str], datetime] = OrderedDict()
        self._remember = remember_seconds
        self._max = max_pairs

    def is_known(self, pair: tuple[str, str], now: datetime) -> bool:
        at = self._seen.get(pair)
        if at is None:
            return False
        if (now - at).total_seconds() >= self._remember:
            del self._seen[pair]
            return False
        return True

    def add(self, pair: tuple[str, str], now: datetime) -> None:
        self._seen.pop(pair, None)
        self._seen[pair] = now
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)


class LoginThrottle:
    def __init__(
        self,
        account: ThrottlePolicy = ACCOUNT_POLICY,
        address: ThrottlePolicy = ADDRESS_POLICY,
        pair: ThrottlePolicy = PAIR_POLICY,
        known_pair: ThrottlePolicy = KNOWN_PAIR_POLICY,
    ) -> None:
        self._accounts = FailureThrottle(account)
        self._addresses = FailureThrottle(address)
        self._pairs = FailureThrottle(pair)
        self._known_pairs = FailureThrottle(known_pair)
        self._known = KnownAddresses()

    def check(self, email: str, address: str, now: datetime) -> None:
        address = address_key(address) if address else ""
        pair = _pair_key(email, address)
        if address and self._known.is_known((email, address), now):
            # Failures from elsewhere never lock the owner out of an address they use.
            wait = self._known_pairs.retry_after(pair, now)
        else:
            wait = max(
                self._pairs.retry_after(pair, now),
                self._accounts.retry_after(email, now),
                self._addresses.retry_after(address, now) if address else 0,
            )
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed logins; retry in {max(1, round(wait))}s", retry_after=max(1.0, wait)
            )

    def failed(self, email: str, address: str, now: datetime) -> None:
        address = address_key(address) if address else ""
        pair = _pair_key(email, address)
        if address and self._known.is_known((email, address), now):
            self._known_pairs.failed(pair, now)
            return
        self._pairs.failed(pair, now)
        self._accounts.failed(email, now)
        if address:
            self._addresses.failed(address, now)

    def succeeded(self, email: str, address: str = "", now: datetime | None = None) -> None:
        address = address_key(address) if address else ""
        pair = _pair_key(email, address)
        self._pairs.succeeded(pair)
        self._known_pairs.succeeded(pair)
        self._accounts.succeeded(email)
        if address and now is not None:
            self._known.add((email, address), now)


def _pair_key(email: str, address: str) -> str:
    # NUL cannot occur in a normalised email, so the two parts cannot run into each other.
    return f"{email}\0{address}"
