"""A circuit breaker for the ClaimX API: closed → open (after counted failures) → half-open
(after the open time; a few trial calls) → closed (after enough trial successes).

Only retryable failures count (429, 5xx, timeouts, connection errors); any answer the service
gives on purpose (2xx, 401, 404…) is a success for the breaker. While open, a call is refused at
once with the moment it may be tried again, so an orchestration can sleep on a durable timer
until then instead of spending its retries. Times come from the app's clock (``shared.clock``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shared.clock import utc_now
from shared.errors import ClassifiedError, ErrorCategory, Failure

HALF_OPEN_RETRY_SECONDS = 5.0  # a call refused while the trial calls run waits this long (plus jitter)
RETRY_JITTER_SECONDS = 10.0  # spreads waiting orchestrations over the first seconds after re-opening


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(ClassifiedError):
    """The circuit refused the call; ``retry_at`` is when it may be tried again."""

    def __init__(self, name: str, retry_at: datetime) -> None:
        super().__init__(
            Failure.of(ErrorCategory.CIRCUIT_OPEN, f"circuit {name} is open until {retry_at.isoformat()}")
        )
        self.retry_at = retry_at


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted call; a half-open trial holds one of the trial slots until it is recorded."""

    trial: bool
    generation: int


@dataclass
class CircuitBreaker:
    name: str
    failure_threshold: int = 5
    open_seconds: float = 60.0
    half_open_calls: int = 3
    close_after_successes: int = 2
    clock: Callable[[], datetime] = field(default=lambda: utc_now())
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0, RETRY_JITTER_SECONDS))
    state: CircuitState = field(default=CircuitState.CLOSED, init=False)
    _failures: int = field(default=0, init=False)
    _opened_at: datetime | None = field(default=None, init=False)
    _trials: int = field(default=0, init=False)
    _successes: int = field(default=0, init=False)
    _generation: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def open_until(self) -> datetime | None:
        if self._opened_at is None:
            return None
        return self._opened_at + timedelta(seconds=self.open_seconds)

    def admit(self) -> Ticket:
        """A ticket for one call, or :class:`CircuitOpenError`."""
        with self._lock:
            now = self.clock()
            if self.state is CircuitState.OPEN:
                until = self.open_until
                assert until is not None
                if now < until:
                    raise CircuitOpenError(self.name, until + timedelta(seconds=self.jitter()))
                self._enter(CircuitState.HALF_OPEN)
            if self.state is CircuitState.HALF_OPEN:
                if self._trials >= self.half_open_calls:
                    wait = HALF_OPEN_RETRY_SECONDS + self.jitter()
                    raise CircuitOpenError(self.name, now + timedelta(seconds=wait))
                self._trials += 1
                return Ticket(trial=True, generation=self._generation)
            return Ticket(trial=False, generation=self._generation)

    def record_success(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.generation != self._generation:
                return  # the state moved on while this call ran
            if self.state is CircuitState.HALF_OPEN:
                self._trials -= 1
                self._successes += 1
                if self._successes >= self.close_after_successes:
                    self._enter(CircuitState.CLOSED)
            else:
                self._failures = 0

    def record_failure(self, ticket: Ticket) -> None:
        """A counted (retryable) failure."""
        with self._lock:
            if ticket.generation != self._generation:
                return
            if self.state is CircuitState.HALF_OPEN:
                self._enter(CircuitState.OPEN)
                return
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._enter(CircuitState.OPEN)

    def _enter(self, state: CircuitState) -> None:
        self.state = state
        self._generation += 1
        self._failures = self._trials = self._successes = 0
        self._opened_at = self.clock() if state is CircuitState.OPEN else None
