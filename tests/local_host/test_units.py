"""Pure pieces of the local host: NCRONTAB, retry policies, the virtual clock, status history shape,
host.json, route templates, non-determinism messages, batch entities, partition numbering."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from local_host import EventData, HostConfig, RetryPolicy, VirtualClock
from local_host.cron import CronSchedule
from local_host.eventhubs import Partition
from local_host.history import EventType, event, to_status_history
from local_host.http_triggers import aiohttp_routes
from local_host.indexing import IndexingError, parse_timespan, resolve_setting
from local_host.invocation import format_timespan
from local_host.orchestration import ScheduledTask, non_determinism
from local_host.table_batch import entity_json

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


def test_host_json_limits_and_defaults(tmp_path: Path) -> None:
    assert HostConfig.load(None) == HostConfig()
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "functionTimeout": "00:05:00",
                "extensions": {
                    "durableTask": {
                        "hubName": "%HUB%",
                        "maxConcurrentActivityFunctions": 3,
                        "maxConcurrentOrchestratorFunctions": 5,
                        "storageProvider": {"partitionCount": 2},
                    },
                    "eventHubs": {"maxEventBatchSize": 7},
                    "http": {"routePrefix": "/v1/"},
                },
            }
        )
    )
    config = HostConfig.load(tmp_path)
    assert (config.max_concurrent_activities, config.max_concurrent_orchestrators) == (3, 5)
    assert config.function_timeout == timedelta(minutes=5)
    assert (config.max_event_batch_size, config.partition_count, config.route_prefix) == (7, 2, "v1")
    assert config.task_hub({"HUB": "claims"}) == "claims"
    (tmp_path / "host.json").write_text('{"functionTimeout": "-1"}')
    assert HostConfig.load(tmp_path).function_timeout is None


def test_timespans_print_as_the_host_prints_them() -> None:
    assert format_timespan(timedelta(minutes=30)) == "00:30:00"
    assert format_timespan(timedelta(days=1, seconds=1.5)) == "1.00:00:01.5000000"


def test_route_templates() -> None:
    assert aiohttp_routes("orders/{id:int}/lines/{*rest}") == ["orders/{id}/lines/{rest:.*}"]
    assert aiohttp_routes("/items/{name?}") == ["items/{name}", "items"]


def test_non_determinism_messages_name_the_recorded_task() -> None:
    recorded = ScheduledTask("orchestrator", "child", 4)
    assert non_determinism(recorded, None, None).startswith(
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled a "
        "sub-orchestration task with sequence ID 4 and name 'child', but the current replay execution "
        "hasn't (yet?) scheduled this task."
    )
    timer = non_determinism(ScheduledTask("timer", "", 2), "activity", "x")
    assert "scheduled a timer task with sequence ID 2, but the current orchestration replay instead " in timer
    assert "produced a ScheduleTaskOrchestratorAction action" in timer


def test_batch_entities_carry_edm_types() -> None:
    body = json.loads(
        entity_json(
            {
                "PartitionKey": "p",
                "RowKey": "r",
                "Small": 5,
                "Big": 2**40,
                "At": T0,
                "Flag": True,
                "Gone": None,
            }
        )
    )
    assert body == {
        "PartitionKey": "p",
        "RowKey": "r",
        "Small": 5,
        "Big": "1099511627776",
        "Big@odata.type": "Edm.Int64",
        "At": "2026-11-22T10:02:30.000000Z",
        "At@odata.type": "Edm.DateTime",
        "Flag": True,
    }


def test_partition_numbers_events_like_the_service() -> None:
    partition = Partition(first_sequence=10, first_offset=100)
    first = partition.append(b"abc", T0)
    second = partition.append(EventData("de", partition_key="k", enqueued_time=T0 + timedelta(seconds=1)), T0)
    assert (first.sequence_number, first.offset, second.sequence_number, second.offset) == (10, 100, 11, 103)
    assert second.partition_key == "k" and second.enqueued_time == T0 + timedelta(seconds=1)
    assert partition.after(10) == [second] and partition.after(None) == [first, second]
