from datetime import UTC, datetime, timedelta

import pytest

from server.core.errors import ResourceExhausted
from server.core.login_throttle import LoginThrottle, ThrottlePolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = ThrottlePolicy(free_failures=3, base_delay_seconds=1, max_delay_seconds=60, forget_after_seconds=600)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_free_failures_then_exponential_wait_with_a_retry_hint() -> None:
    throttle = LoginThrottle(account=POLICY, address=POLICY)
    for _ in range(3):
        throttle.check("a@x", "", T0)
        throttle.failed("a@x", "", T0)
    with pytest.raises(ResourceExhausted) as info:
        throttle.check("a@x", "", T0)
    assert info.value.retry_after == 1
    throttle.check("a@x", "", at(1))  # waited long enough
    throttle.failed("a@x", "", at(1))
    with pytest.raises(ResourceExhausted) as info:
        throttle.check("a@x", "", at(2))
    assert info.value.retry_after == 1  # 2 s wait, 1 s already passed


def test_wait_is_capped_and_forgotten_after_a_quiet_period() -> None:
    throttle = LoginThrottle(account=POLICY, address=POLICY, pair=POLICY)
    for _ in range(30):
        throttle.failed("a@x", "", T0)
    with pytest.raises(ResourceExhausted) as info:
        throttle.check("a@x", "", T0)
    assert info.value.retry_after == 60
    throttle.check("a@x", "", at(601))


def test_success_clears_the_account_but_other_accounts_are_independent() -> None:
    throttle = LoginThrottle(account=POLICY, address=ThrottlePolicy(100, 1, 60, 600))
    for _ in range(4):
        throttle.failed("a@x", "1.2.3.4", T0)
    throttle.check("b@x", "1.2.3.4", T0)
    throttle.succeeded("a@x")
    throttle.check("a@x", "1.2.3.4", T0)


def test_one_address_trying_many_accounts_is_throttled() -> None:
    throttle = LoginThrottle(account=POLICY, address=POLICY)
    for i in range(4):
        throttle.failed(f"user{i}@x", "9.9.9.9", T0)
    with pytest.raises(ResourceExhausted):
        throttle.check("fresh@x", "9.9.9.9", T0)
    throttle.check("fresh@x", "8.8.8.8", T0)


def test_guesses_from_one_address_do_not_lock_the_owner_out_elsewhere() -> None:
    throttle = LoginThrottle()
    for _ in range(7):
        throttle.failed("owner@x", "203.0.113.7", T0)
    with pytest.raises(ResourceExhausted):
        throttle.check("owner@x", "203.0.113.7", T0)  # the guesser waits
    throttle.check("owner@x", "198.51.100.20", T0)  # the owner, somewhere else, does not


def test_many_addresses_lock_new_ones_but_never_an_address_the_owner_used() -> None:
    throttle = LoginThrottle()
    throttle.succeeded("owner@x", "198.51.100.30", T0)
    for i in range(40):
        throttle.failed("owner@x", f"203.0.113.{i}", at(i))
    with pytest.raises(ResourceExhausted):
        throttle.check("owner@x", "192.0.2.99", at(40))  # a fresh address shares the account's budget
    throttle.check("owner@x", "198.51.100.30", at(40))


def test_a_known_address_has_its_own_softer_limit() -> None:
    throttle = LoginThrottle()
    throttle.succeeded("owner@x", "198.51.100.30", T0)
    for _ in range(10):
        throttle.check("owner@x", "198.51.100.30", T0)
        throttle.failed("owner@x", "198.51.100.30", T0)
    with pytest.raises(ResourceExhausted):
        throttle.check("owner@x", "198.51.100.30", T0)


def test_ipv6_addresses_count_per_64() -> None:
    throttle = LoginThrottle()
    for i in range(7):
        throttle.failed("owner@x", f"2001:db8:1:2::{i + 1:x}", T0)
    with pytest.raises(ResourceExhausted):
        throttle.check("owner@x", "2001:db8:1:2:ffff::1", T0)
    throttle.check("owner@x", "2001:db8:1:3::1", T0)
