"""The circuit breaker on a hand-moved clock: opening, refusing with a retry time, half-open
trials, closing, reopening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.claimx.circuit import CircuitBreaker, CircuitOpenError, CircuitState
from shared.errors import ErrorCategory

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("claimx_api", clock=clock, jitter=lambda: 0.0)


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.record_failure(b.admit())


def test_opens_after_five_counted_failures_and_refuses_until_the_open_time_passed() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 4)
    assert b.state is CircuitState.CLOSED
    fail(b, 1)
    assert b.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as refused:
        b.admit()
    assert refused.value.retry_at == T0 + timedelta(seconds=60)
    assert refused.value.failure.category is ErrorCategory.CIRCUIT_OPEN
    clock.now = T0 + timedelta(seconds=59)
    with pytest.raises(CircuitOpenError):
        b.admit()


def test_a_success_resets_the_count_while_closed() -> None:
    b = breaker(Clock())
    fail(b, 4)
    b.record_success(b.admit())
    fail(b, 4)
    assert b.state is CircuitState.CLOSED


def test_half_open_allows_three_trials_and_closes_after_two_successes() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 5)
    clock.now = T0 + timedelta(seconds=60)
    trials = [b.admit() for _ in range(3)]
    assert b.state is CircuitState.HALF_OPEN
    assert all(t.trial for t in trials)
    with pytest.raises(CircuitOpenError) as refused:
        b.admit()
    assert refused.value.retry_at == clock.now + timedelta(seconds=5)
    b.record_success(trials[0])
    assert b.state is CircuitState.HALF_OPEN
    b.record_success(trials[1])
    assert b.state is CircuitState.CLOSED
    b.record_failure(trials[2])  # a trial of the finished half-open phase no longer counts
    assert b.state is CircuitState.CLOSED
    assert not b.admit().trial


def test_a_failed_trial_reopens_for_another_open_period() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b, 5)
    clock.now = T0 + timedelta(seconds=61)
    b.record_failure(b.admit())
    assert b.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as refused:
        b.admit()
    assert refused.value.retry_at == T0 + timedelta(seconds=121)
