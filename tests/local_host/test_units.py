"""Pure pieces of the local host: NCRONTAB, retry policies, the virtual clock, status history shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local_host import RetryPolicy, VirtualClock
from local_host.cron import CronSchedule
from local_host.history import EventType, event, to_status_history
from local_host.indexing import IndexingError, parse_timespan, resolve_setting

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 22, 10, 2, 30, tzinfo=UTC)  # a Sunday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 11, 22, 10, 5, 0, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 11, 22, 10, 2, 40, tzinfo=UTC)),
        ("0 0 3 * * *", datetime(2026, 11, 23, 3, 0, 0, tzinfo=UTC)),
        ("0 30 9 * * Mon-Fri", datetime(2026, 11, 23, 9, 30, 0, tzinfo=UTC)),
        ("0 0 0 1 Jan *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
    ],
)
def test_ncrontab_next_occurrence(expression: str, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(T0) == expected


def test_ncrontab_rejects_five_fields() -> None:
    with pytest.raises(ValueError, match="6-field"):
        CronSchedule.parse("*/5 * * * *")


def test_retry_policies() -> None:
    fixed = RetryPolicy.from_settings(
        {"strategy": "fixed_delay", "max_retry_count": "2", "delay_interval": "00:00:10"}, where="f"
    )
    assert [fixed.delay_before(n) for n in (1, 2)] == [timedelta(seconds=10)] * 2
    assert fixed.allows_retry(1) and not fixed.allows_retry(2)
    backoff = RetryPolicy.from_settings(
        {
            "strategy": "exponential_backoff",
            "max_retry_count": "-1",
            "minimum_interval": "00:00:01",
            "maximum_interval": "00:00:05",
        },
        where="f",
    )
    assert [backoff.delay_before(n).seconds for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert backoff.allows_retry(10_000)
    assert parse_timespan("1.02:03:04.5") == timedelta(
        days=1, hours=2, minutes=3, seconds=4, milliseconds=500
    )


def test_setting_references() -> None:
    assert resolve_setting("%HUB%-x", {"HUB": "claims"}, where="w") == "claims-x"
    with pytest.raises(IndexingError, match="'%NOPE%' does not resolve"):
        resolve_setting("%NOPE%", {}, where="w")


def test_virtual_clock_moves_only_forward() -> None:
    clock = VirtualClock(T0)
    clock.advance_to(T0 - timedelta(hours=1))
    assert clock.now() == T0
    assert clock.advance(timedelta(minutes=5)) == T0 + timedelta(minutes=5)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))


def test_status_history_folds_scheduling_into_completion() -> None:
    history = [
        event(EventType.OrchestratorStarted, T0),
        event(EventType.ExecutionStarted, T0, Name="orch", Input="null"),
        event(EventType.TaskScheduled, T0, 0, Name="act", Input='"x"'),
        event(EventType.OrchestratorCompleted, T0),
        event(EventType.OrchestratorStarted, T0),
        event(EventType.TaskCompleted, T0, TaskScheduledId=0, Result='{"ok": true}'),
        event(EventType.ExecutionCompleted, T0, 1, OrchestrationStatus="Completed", Result='"done"'),
        event(EventType.OrchestratorCompleted, T0),
    ]
    stamp = "2026-11-22T10:02:30.000000Z"
    assert to_status_history(history, show_output=True) == [
        {"EventType": "ExecutionStarted", "Timestamp": stamp, "FunctionName": "orch"},
        {
            "EventType": "TaskCompleted",
            "Timestamp": stamp,
            "FunctionName": "act",
            "ScheduledTime": stamp,
            "Result": {"ok": True},
        },
        {
            "EventType": "ExecutionCompleted",
            "Timestamp": stamp,
            "OrchestrationStatus": "Completed",
            "Result": "done",
        },
    ]
    assert "Result" not in to_status_history(history, show_output=False)[1]
