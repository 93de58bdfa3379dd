"""The pipeline's metrics: OpenTelemetry instruments under the names the dashboards and alerts use,
each also kept in this process so ``claimsflow run`` and the tests can read what happened.

In Azure the Python worker configures Azure Monitor (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``)
and these instruments reach Application Insights ``customMetrics`` under the same names; without a
configured provider the OpenTelemetry API records nothing and only the in-process view remains.
Attributes are low-cardinality labels (domain, outcome, table, ...): never ids, URLs or messages.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from opentelemetry import metrics as otel

_meter = otel.get_meter("claimsflow")
_lock = threading.Lock()
Labels = tuple[tuple[str, str], ...]


class Kind(StrEnum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"


def _labels(attributes: Mapping[str, Any]) -> Labels:
    return tuple(sorted((key, str(value)) for key, value in attributes.items()))


@dataclass(frozen=True, slots=True)
class Sample:
    """What this process recorded for one instrument and one set of labels."""

    total: float = 0.0  # counters: the sum; gauges: the last value
    values: tuple[float, ...] = ()  # histograms: every recorded value


class Instrument:
    """One named instrument: records to OpenTelemetry and to the in-process view."""

    def __init__(self, name: str, kind: Kind, unit: str, description: str) -> None:
        self.name = name
        self.kind = kind
        if kind is Kind.COUNTER:
            self._otel: Any = _meter.create_counter(name, unit=unit, description=description)
        elif kind is Kind.HISTOGRAM:
            self._otel = _meter.create_histogram(name, unit=unit, description=description)
        else:
            self._otel = _meter.create_gauge(name, unit=unit, description=description)
        self._totals: dict[Labels, float] = defaultdict(float)
        self._values: dict[Labels, list[float]] = defaultdict(list)

    def add(self, value: float = 1, **attributes: Any) -> None:
        """Counters: add ``value`` (zero is ignored)."""
        if not value:
            return
        self._otel.add(value, attributes)
        with _lock:
            self._totals[_labels(attributes)] += value

    def record(self, value: float, **attributes: Any) -> None:
        """Histograms: one observation; gauges: the current value."""
        if self.kind is Kind.GAUGE:
            self._otel.set(value, attributes)
        else:
            self._otel.record(value, attributes)
        with _lock:
            if self.kind is Kind.GAUGE:
                self._totals[_labels(attributes)] = value
            else:
                self._values[_labels(attributes)].append(value)

    def total(self, **attributes: Any) -> float:
        """Sum of counter values (or last gauge values) whose labels include ``attributes``."""
        wanted = set(_labels(attributes))
        with _lock:
            return sum(v for labels, v in self._totals.items() if wanted <= set(labels))

    def values(self, **attributes: Any) -> list[float]:
        """Histogram observations whose labels include ``attributes``."""
        wanted = set(_labels(attributes))
        with _lock:
            return [v for labels, vs in self._values.items() if wanted <= set(labels) for v in vs]

    def samples(self) -> dict[Labels, Sample]:
        with _lock:
            keys = set(self._totals) | set(self._values)
            return {k: Sample(self._totals.get(k, 0.0), tuple(self._values.get(k, ()))) for k in sorted(keys)}

    def reset(self) -> None:
        with _lock:
            self._totals.clear()
            self._values.clear()


def _instrument(name: str, kind: Kind, unit: str, description: str) -> Instrument:
    instrument = Instrument(name, kind, unit, description)
    ALL[name] = instrument
    return instrument


ALL: dict[str, Instrument] = {}

EVENTS = _instrument("claimsflow.events", Kind.COUNTER, "1", "Bodies by domain and outcome")
DEDUP_HITS = _instrument("claimsflow.dedup.hits", Kind.COUNTER, "1", "Events already seen")
ATTACHMENTS = _instrument("claimsflow.attachments", Kind.COUNTER, "1", "Attachments by final status")
ATTACHMENT_BYTES = _instrument("claimsflow.attachments.bytes", Kind.COUNTER, "By", "Bytes uploaded")
TRANSFER_DURATION = _instrument("claimsflow.transfer.duration", Kind.HISTOGRAM, "s", "One transfer")
RETRIES = _instrument("claimsflow.retries", Kind.COUNTER, "1", "Retries scheduled, by error category")
RETRIES_FIRED = _instrument("claimsflow.retries.fired", Kind.COUNTER, "1", "Retry timers that fired")
DEAD_LETTERS = _instrument("claimsflow.deadletters", Kind.COUNTER, "1", "Dead letters written")
STAGING_BACKLOG = _instrument("claimsflow.staging.backlog", Kind.GAUGE, "1", "Rows waiting in staging")
STAGING_BACKLOG_AGE = _instrument(
    "claimsflow.staging.backlog_age", Kind.GAUGE, "s", "Age of the oldest staged row"
)
FLUSH_ROWS = _instrument("claimsflow.flush.rows", Kind.COUNTER, "1", "Rows merged into Delta")
FLUSH_DURATION = _instrument("claimsflow.flush.duration", Kind.HISTOGRAM, "s", "One table's flush")
FLUSH_FAILURES = _instrument("claimsflow.flush.failures", Kind.COUNTER, "1", "Failed table flushes")
COMMIT_CONFLICTS = _instrument(
    "claimsflow.delta.commit_conflicts", Kind.COUNTER, "1", "Delta commits lost to a concurrent writer"
)
INSTANCES_STARTED = _instrument("claimsflow.instances.started", Kind.COUNTER, "1", "Orchestrations started")
INSTANCES_ENDED = _instrument("claimsflow.instances.ended", Kind.COUNTER, "1", "Orchestrations ended")
INSTANCES_FAILED = _instrument("claimsflow.instances.failed", Kind.COUNTER, "1", "Orchestrations failed")
FRESHNESS = _instrument(
    "claimsflow.freshness", Kind.HISTOGRAM, "s", "Event enqueued to its Delta row visible"
)
# The same, measured on the wall clock of this process (differs from FRESHNESS only where the app's
# clock is virtual: the local host). Kept in process for the run report; not a dashboard metric.
WALL_FRESHNESS = _instrument(
    "claimsflow.freshness.wall", Kind.HISTOGRAM, "s", "Row staged to visible, on the wall clock"
)


# Details a domain counts for its own tests and local runs (``claimx.circuit.refusals``, ...): kept
# in this process only, never exported; what dashboards need is an instrument above.
_details: defaultdict[str, int] = defaultdict(int)


def add(name: str, value: int = 1) -> None:
    """Count a process-local detail (not exported)."""
    if value:
        with _lock:
            _details[name] += value


def details() -> dict[str, int]:
    with _lock:
        return dict(_details)


def reset() -> None:
    """Forget the in-process view (the start of a local run)."""
    for instrument in ALL.values():
        instrument.reset()
    with _lock:
        _details.clear()


def snapshot() -> dict[str, dict[Labels, Sample]]:
    """Every instrument's recordings in this process, by instrument name."""
    return {name: instrument.samples() for name, instrument in ALL.items()}
