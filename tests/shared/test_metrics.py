"""The metrics reach an OpenTelemetry pipeline under the names the dashboards use, with labels only."""

from __future__ import annotations

from typing import Any

import pytest

from shared import metrics
from tests.conftest import exported_points

pytestmark = pytest.mark.unit

DASHBOARD_NAMES = {
    "claimsflow.events",
    "claimsflow.dedup.hits",
    "claimsflow.attachments",
    "claimsflow.attachments.bytes",
    "claimsflow.transfer.duration",
    "claimsflow.retries",
    "claimsflow.deadletters",
    "claimsflow.staging.backlog",
    "claimsflow.staging.backlog_age",
    "claimsflow.flush.rows",
    "claimsflow.flush.duration",
    "claimsflow.flush.failures",
    "claimsflow.delta.commit_conflicts",
    "claimsflow.instances.failed",
    "claimsflow.freshness",
}


def test_every_dashboard_metric_is_an_instrument() -> None:
    assert set(metrics.ALL) >= DASHBOARD_NAMES
    assert all(name.startswith("claimsflow.") for name in metrics.ALL)


def test_recordings_reach_the_sdk_and_the_process_view(otel_metrics: Any) -> None:
    # labels of their own, so what other tests recorded in this process does not count here
    metrics.EVENTS.add(3, domain="metricstest", outcome="accepted")
    metrics.EVENTS.add(0, domain="metricstest", outcome="invalid")  # nothing recorded for zero
    metrics.FRESHNESS.record(12.5, domain="metricstest", table="metricstest_events")
    metrics.STAGING_BACKLOG.record(7, table="metricstest_events")
    metrics.STAGING_BACKLOG.record(2, table="metricstest_events")

    points = [(n, a, p) for n, a, p in exported_points(otel_metrics) if "metricstest" in str(a)]
    events = {a["outcome"]: p.value for n, a, p in points if n == "claimsflow.events"}
    assert events == {"accepted": 3}
    [freshness] = [p for n, _, p in points if n == "claimsflow.freshness"]
    assert (freshness.count, freshness.max) == (1, 12.5)
    [backlog] = [p for n, _, p in points if n == "claimsflow.staging.backlog"]
    assert backlog.value == 2  # a gauge reports the last value

    assert metrics.EVENTS.total(domain="metricstest", outcome="accepted") == 3
    assert metrics.EVENTS.total(domain="metricstest", outcome="invalid") == 0
    assert metrics.FRESHNESS.values(table="metricstest_events") == [12.5]
    assert metrics.STAGING_BACKLOG.total(table="metricstest_events") == 2


def test_reset_clears_the_process_view_only() -> None:
    metrics.DEDUP_HITS.add(2, domain="resettest")
    assert metrics.DEDUP_HITS.total(domain="resettest") == 2
    metrics.reset()
    assert metrics.DEDUP_HITS.total(domain="resettest") == 0
    assert metrics.snapshot()["claimsflow.dedup.hits"] == {}
    metrics.add("claimx.circuit.refusals", 2)
    assert metrics.details() == {"claimx.circuit.refusals": 2}
    metrics.reset()
    assert metrics.details() == {}
