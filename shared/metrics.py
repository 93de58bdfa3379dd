"""Process-wide counters of what the pipeline did (events by outcome, attachments by status).

Every increment is also a structured log line, which reaches Application Insights as a custom
dimension in OpenTelemetry mode; ``claimsflow run`` reads the counters for its report.
"""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counters: Counter[str] = Counter()


def add(name: str, value: int = 1) -> None:
    if value:
        with _lock:
            _counters[name] += value


def snapshot() -> dict[str, int]:
    with _lock:
        return dict(_counters)


def reset() -> None:
    with _lock:
        _counters.clear()
