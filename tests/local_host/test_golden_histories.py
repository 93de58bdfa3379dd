"""Golden histories: the engine's event sequences, pinned literally.

Each row is (EventType, id, Name, IsPlayed) where id is EventId for scheduling events and
ExecutionCompleted, TaskScheduledId for completions and TimerId for TimerFired (-1 otherwise).
The sequences follow DTFx / the SDK's test ContextBuilder conventions: episodes are
OrchestratorStarted ... OrchestratorCompleted, tasks are numbered 0, 1, 2... in creation order, retry
timers take the number after the failed attempt (attempts 0, 2, 4; timers 1, 3, 5), and IsPlayed is
true for every event of an episode the SDK has already replayed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from local_host import EventType, LocalHost
from tests.local_host.local_host_apps import START

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]

Row = tuple[str, int, str | None, bool]


def shape(history: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for e in history:
        ident = e.get("TaskScheduledId", e.get("TimerId", e["EventId"]))
        rows.append((EventType(e["EventType"]).name, ident, e.get("Name"), e["IsPlayed"]))
    return rows


async def run(host: LocalHost, name: str, input_: Any = None, instance_id: str = "golden") -> list[Row]:
    await host.start_orchestration(name, input_, instance_id=instance_id)
    await host.run_until_idle()
    return shape(await host.get_history(instance_id))


async def test_chain_of_two_activities(host: LocalHost) -> None:
    assert await run(host, "chain") == [
        ("OrchestratorStarted", -1, None, True),
        ("ExecutionStarted", -1, "chain", True),
        ("TaskScheduled", 0, "hello", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, True),
        ("TaskCompleted", 0, None, True),
        ("TaskScheduled", 1, "hello", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, False),
        ("TaskCompleted", 1, None, False),
        ("ExecutionCompleted", 2, None, False),
        ("OrchestratorCompleted", -1, None, False),
    ]
    status = await host.get_status("golden")
    assert status is not None and status.runtime_status == "Completed"
    assert status.output == '["hello a", "hello b"]'


async def test_fan_out_fan_in(host: LocalHost) -> None:
    assert await run(host, "fan_out", ["a", "b", "c"]) == [
        ("OrchestratorStarted", -1, None, True),
        ("ExecutionStarted", -1, "fan_out", True),
        ("TaskScheduled", 0, "hello", True),
        ("TaskScheduled", 1, "hello", True),
        ("TaskScheduled", 2, "hello", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, False),
        ("TaskCompleted", 0, None, False),
        ("TaskCompleted", 1, None, False),
        ("TaskCompleted", 2, None, False),
        ("ExecutionCompleted", 3, None, False),
        ("OrchestratorCompleted", -1, None, False),
    ]
    status = await host.get_status("golden")
    assert status is not None and status.output == '["hello a", "hello b", "hello c"]'


async def test_sub_orchestration(host: LocalHost) -> None:
    assert await run(host, "parent") == [
        ("OrchestratorStarted", -1, None, True),
        ("ExecutionStarted", -1, "parent", True),
        ("SubOrchestrationInstanceCreated", 0, "chain", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, False),
        ("SubOrchestrationInstanceCompleted", 0, None, False),
        ("ExecutionCompleted", 1, None, False),
        ("OrchestratorCompleted", -1, None, False),
    ]
    child = shape(await host.get_history("golden-child"))
    assert [row[:2] for row in child] == [
        ("OrchestratorStarted", -1),
        ("ExecutionStarted", -1),
        ("TaskScheduled", 0),
        ("OrchestratorCompleted", -1),
        ("OrchestratorStarted", -1),
        ("TaskCompleted", 0),
        ("TaskScheduled", 1),
        ("OrchestratorCompleted", -1),
        ("OrchestratorStarted", -1),
        ("TaskCompleted", 1),
        ("ExecutionCompleted", 2),
        ("OrchestratorCompleted", -1),
    ]
    status = await host.get_status("golden")
    assert status is not None and status.output == '{"child": ["hello a", "hello b"]}'


async def test_durable_timer(host: LocalHost) -> None:
    assert await run(host, "sleeper", 40) == [
        ("OrchestratorStarted", -1, None, True),
        ("ExecutionStarted", -1, "sleeper", True),
        ("TimerCreated", 0, None, True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, False),
        ("TimerFired", 0, None, False),
        ("ExecutionCompleted", 1, None, False),
        ("OrchestratorCompleted", -1, None, False),
    ]


async def test_forty_minute_timer_is_instant_and_fires_at_real_time(host: LocalHost) -> None:
    await host.start_orchestration("sleeper", 40, instance_id="nap")
    await host.run_until_idle()  # milliseconds of wall time
    history = await host.get_history("nap")
    fired = next(e for e in history if e["EventType"] == EventType.TimerFired)
    expected = (START + timedelta(minutes=40)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert fired["FireAt"] == expected
    assert fired["Timestamp"] == expected
    assert host.clock.now() == START + timedelta(minutes=40)
    status = await host.get_status("nap")
    assert status is not None and status.runtime_status == "Completed"


async def test_call_activity_with_retry_fails_twice_then_succeeds(host: LocalHost) -> None:
    rows = await run(host, "retrying", {"key": "twice", "failures": 2})
    assert rows == [
        ("OrchestratorStarted", -1, None, True),
        ("ExecutionStarted", -1, "retrying", True),
        ("TaskScheduled", 0, "flaky", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, True),
        ("TaskFailed", 0, None, True),
        ("TimerCreated", 1, None, True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, True),
        ("TimerFired", 1, None, True),
        ("TaskScheduled", 2, "flaky", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, True),
        ("TaskFailed", 2, None, True),
        ("TimerCreated", 3, None, True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, True),
        ("TimerFired", 3, None, True),
        ("TaskScheduled", 4, "flaky", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, False),
        ("TaskCompleted", 4, None, False),
        ("ExecutionCompleted", 5, None, False),
        ("OrchestratorCompleted", -1, None, False),
    ]
    history = await host.get_history("golden")
    fire_times = [e["FireAt"] for e in history if e["EventType"] == EventType.TimerCreated]
    assert fire_times == ["2026-11-22T10:00:05.000000Z", "2026-11-22T10:00:10.000000Z"]
    status = await host.get_status("golden")
    assert status is not None and status.output == '{"attempts": 3}'


async def test_call_activity_with_retry_exhausted(host: LocalHost) -> None:
    rows = await run(host, "retrying", {"key": "always", "failures": 99})
    assert rows[-12:] == [
        ("OrchestratorStarted", -1, None, True),
        ("TimerFired", 3, None, True),
        ("TaskScheduled", 4, "flaky", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, True),
        ("TaskFailed", 4, None, True),
        ("TimerCreated", 5, None, True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, False),
        ("TimerFired", 5, None, False),
        ("ExecutionCompleted", 6, None, False),
        ("OrchestratorCompleted", -1, None, False),
    ]
    status = await host.get_status("golden")
    assert status is not None and status.runtime_status == "Failed"
    assert status.output is not None and "attempt 3 failed" in status.output


async def test_failing_orchestration(host: LocalHost) -> None:
    assert await run(host, "failing") == [
        ("OrchestratorStarted", -1, None, True),
        ("ExecutionStarted", -1, "failing", True),
        ("TaskScheduled", 0, "boom", True),
        ("OrchestratorCompleted", -1, None, True),
        ("OrchestratorStarted", -1, None, False),
        ("TaskFailed", 0, None, False),
        ("ExecutionCompleted", 1, None, False),
        ("OrchestratorCompleted", -1, None, False),
    ]
    history = await host.get_history("golden")
    assert history[-2]["OrchestrationStatus"] == "Failed"
    status = await host.get_status("golden")
    assert status is not None and status.runtime_status == "Failed"
    assert status.output is not None and "ValueError: boom x" in status.output


async def test_unknown_activity_fails_the_instance_clearly(host: LocalHost) -> None:
    await host.start_orchestration("calls_missing", instance_id="missing")
    await host.run_until_idle()
    status = await host.get_status("missing")
    assert status is not None and status.runtime_status == "Failed"
    assert (
        status.output
        == "The function 'no_such_activity' doesn't exist, is disabled, or is not an activity function."
    )
