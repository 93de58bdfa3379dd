"""The worker: non-determinism detection, activities completing independently, host.json limits,
functionTimeout, and what a graceful stop writes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from local_host import EventType, LocalHost, VirtualClock
from tests.local_host import local_host_apps as apps
from tests.local_host.local_host_apps import START, MakeHost

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]

DETERMINISM_QUESTION = (
    "Was a change made to the orchestrator code after this instance had already started running?"
)


def app_root(tmp_path: Path, **durable: Any) -> Path:
    """An app root whose host.json sets ``extensions.durableTask`` (and ``functionTimeout``)."""
    timeout = durable.pop("functionTimeout", None)
    document: dict[str, Any] = {"version": "2.0", "extensions": {"durableTask": durable}}
    if timeout:
        document["functionTimeout"] = timeout
    (tmp_path / "host.json").write_text(json.dumps(document))
    return tmp_path


async def failure_of(host: LocalHost, instance_id: str) -> tuple[str, dict[str, Any]]:
    status = await host.get_status(instance_id)
    assert status is not None and status.runtime_status == "Failed"
    history = await host.get_history(instance_id)
    completed = history[-2]
    assert completed["EventType"] == EventType.ExecutionCompleted
    assert completed["OrchestrationStatus"] == "Failed"
    assert completed["Result"] == status.output
    return status.output or "", completed["FailureDetails"]


@pytest.fixture
def fickle() -> Any:
    apps.FICKLE.update(activity="flip", timer=False, change="name")
    yield apps.FICKLE
    apps.FICKLE.update(activity="flip", timer=False, change="name")


async def test_replay_scheduling_another_activity_fails_the_instance(host: LocalHost, fickle: Any) -> None:
    await host.start_orchestration("fickle", instance_id="nd-name")
    await host.run_until_idle()
    output, details = await failure_of(host, "nd-name")
    assert output == (
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an "
        "activity task with sequence ID 0 and name 'flip', but the current orchestration replay instead "
        f"scheduled an activity task named 'hello' at this sequence number. {DETERMINISM_QUESTION}"
    )
    assert details == {"ErrorType": "NonDeterministicOrchestrationException", "ErrorMessage": output}
    assert apps.calls[("hello", "b")] == 0  # nothing after the mismatch ran


async def test_replay_creating_a_timer_where_an_activity_was_fails(host: LocalHost, fickle: Any) -> None:
    fickle["change"] = "kind"
    await host.start_orchestration("fickle", instance_id="nd-kind")
    await host.run_until_idle()
    output, details = await failure_of(host, "nd-kind")
    assert output.startswith(
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an "
        "activity task with sequence ID 0 and name 'flip', but the current orchestration replay instead "
        "produced a CreateTimerOrchestratorAction action at this sequence number."
    )
    assert details["ErrorType"] == "NonDeterministicOrchestrationException"


async def test_replay_that_no_longer_schedules_a_recorded_task_fails(host: LocalHost, fickle: Any) -> None:
    await host.start_orchestration("forgetful", instance_id="nd-gone")
    await host.run_until_idle()  # flip ran and changed FICKLE: the replay skips it
    output, _ = await failure_of(host, "nd-gone")
    assert output == (
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an "
        "activity task with sequence ID 0 and name 'flip', but the current replay execution hasn't (yet?) "
        f"scheduled this task. {DETERMINISM_QUESTION}"
    )


async def test_a_deterministic_replay_is_not_flagged(host: LocalHost) -> None:
    await host.start_orchestration("retrying", {"key": "nd-ok", "failures": 2}, instance_id="nd-ok")
    await host.run_until_idle()
    status = await host.get_status("nd-ok")
    assert status is not None and status.runtime_status == "Completed"


async def test_a_held_activity_holds_up_nobody_else(host: LocalHost, unique: Callable[[str], str]) -> None:
    """Instance A's activity returns only after instance B ran three activities one after the
    other; with results held back until every running activity finishes, this never ends."""
    key = unique("k")
    await host.start_orchestration("waits_for_release", key, instance_id="a")
    await host.start_orchestration("releases", key, instance_id="b")
    await asyncio.wait_for(host.run_until_idle(), timeout=60)
    assert apps.finished[-2:] == [f"release {key}", f"hold {key}"]
    for instance_id in ("a", "b"):
        status = await host.get_status(instance_id)
        assert status is not None and status.runtime_status == "Completed"
    b_history = await host.get_history("b")
    assert [e["Name"] for e in b_history if e["EventType"] == EventType.TaskScheduled] == [
        "hello",
        "hello",
        "release",
    ]


async def test_at_most_max_concurrent_activity_functions_run_at_once(
    make_host: MakeHost, tmp_path: Path
) -> None:
    apps.ACTIVE.update(now=0, most=0)
    host = await make_host(app_root=app_root(tmp_path, maxConcurrentActivityFunctions=2))
    await host.start_orchestration("crowd", 6, instance_id="crowd")
    await asyncio.wait_for(host.run_until_idle(), timeout=60)
    status = await host.get_status("crowd")
    assert status is not None and json.loads(status.output or "null") == list(range(6))
    assert apps.ACTIVE["most"] == 2


async def test_function_timeout_fails_a_hung_activity(
    make_host: MakeHost, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    host = await make_host(app_root=app_root(tmp_path, functionTimeout="00:00:01"))
    await host.start_orchestration("waits_for_release", unique("never"), instance_id="hung")
    await asyncio.wait_for(host.run_until_idle(), timeout=60)
    output, _ = await failure_of(host, "hung")
    assert (
        "Activity function 'hold' failed: FunctionTimeoutException: Timeout value of 00:00:01 exceeded "
        in output
    )
    assert "by function 'Functions.hold'" in output and "Initiating cancellation." in output


async def test_graceful_stop_writes_messages_no_episode_took_yet(
    make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    first = await make_host(task_hub=hub)
    await first.start_orchestration("sleeper", 40, instance_id="held")
    await first.run_until(START)
    await first.management.set_suspended("held", True, "maintenance")
    await first.run_until_idle()  # the timer fires into the suspended instance's inbox
    assert first.scheduler.instances["held"].inbox[0]["EventType"] == EventType.TimerFired
    await first.stop()

    second = await make_host(task_hub=hub, clock=VirtualClock(START))
    await second.management.set_suspended("held", False, "done")
    await second.run_until_idle()
    status = await second.get_status("held")
    assert status is not None and status.runtime_status == "Completed"
    history = await second.get_history("held")
    assert [e["EventType"] for e in history].count(EventType.TimerFired) == 1


async def test_orchestrator_warnings_are_logged_except_deprecations(
    host: LocalHost, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="local_host"):
        await host.start_orchestration("warns", instance_id="warns-1")
        await host.run_until_idle()
    status = await host.get_status("warns-1")
    assert status is not None and status.runtime_status == "Completed"
    messages = [record.getMessage() for record in caplog.records]
    assert any("warns-1" in m and "orchestrator code smells" in m for m in messages)
    assert not any("an old API" in m for m in messages)
