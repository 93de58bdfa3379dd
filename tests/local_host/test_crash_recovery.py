"""Crashes: a real host process SIGKILLs itself at a named point (``LOCAL_HOST_KILL_AT``), and a
new host on the same storage finishes the work. Nothing is recorded twice: an episode's history and
the state that consumed its messages are one row written in one request, so there is no instant
between "history written" and "state written" for a kill to hit; what the killed process had not
written yet is done again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from claimsflow.azurite import REPO_ROOT, Azurite
from local_host import EventType, InstanceQuery, LocalHost, VirtualClock
from local_host.killpoints import KILL_AT_VARIABLE
from tests.local_host import local_host_apps as apps
from tests.local_host.crash_child import START, event_hub_settings, event_source, orchestration_ids
from tests.local_host.local_host_apps import MakeHost

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]

SCHEDULING = (EventType.TaskScheduled, EventType.TimerCreated, EventType.SubOrchestrationInstanceCreated)
COMPLETING = {
    EventType.TaskCompleted: "TaskScheduledId",
    EventType.TaskFailed: "TaskScheduledId",
    EventType.SubOrchestrationInstanceCompleted: "TaskScheduledId",
    EventType.SubOrchestrationInstanceFailed: "TaskScheduledId",
    EventType.TimerFired: "TimerId",
}
Row = tuple[str, int, str | None, bool]


def crash(
    azurite: Azurite, scenario: str, hub: str, kill_at: str, *args: str, env: dict[str, str] | None = None
) -> None:
    """Run the child host; it must die by SIGKILL at ``kill_at``."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.local_host.crash_child",
            scenario,
            "--connection",
            azurite.connection_string,
            "--hub",
            hub,
            *args,
        ],
        cwd=REPO_ROOT,
        env=os.environ | {KILL_AT_VARIABLE: kill_at} | (env or {}),
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr.decode()[-3000:]


def shape(history: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for e in history:
        ident = e.get("TaskScheduledId", e.get("TimerId", e["EventId"]))
        rows.append((EventType(e["EventType"]).name, ident, e.get("Name"), e["IsPlayed"]))
    return rows


def assert_recorded_once(history: list[dict[str, Any]]) -> None:
    """Every task scheduled once and completed once; episode times never go backwards."""
    scheduled = Counter(e["EventId"] for e in history if e["EventType"] in SCHEDULING)
    completed = Counter(e[COMPLETING[e["EventType"]]] for e in history if e["EventType"] in COMPLETING)
    assert set(scheduled.values()) <= {1} and set(completed.values()) <= {1}, (scheduled, completed)
    assert scheduled.keys() == completed.keys()
    starts = [e["Timestamp"] for e in history if e["EventType"] == EventType.OrchestratorStarted]
    assert starts == sorted(starts)


async def uninterrupted_shapes(
    make_host: MakeHost, unique: Callable[[str], str], ids: dict[str, Any]
) -> dict[str, list[Row]]:
    host = await make_host(task_hub=unique("ref"))
    for instance_id, (name, value) in ids.items():
        await host.start_orchestration(name, value, instance_id=instance_id)
    await host.run_until_idle()
    return {instance_id: shape(await host.get_history(instance_id)) for instance_id in ids}


@pytest.mark.parametrize("kill_at", ["episode-committed:1", "episode-committed:9", "episode-committed:23"])
async def test_kill_after_an_episode_write_duplicates_nothing(
    azurite: Azurite, make_local_host: Any, unique: Callable[[str], str], kill_at: str
) -> None:
    ids = orchestration_ids(3)
    hub = unique("hub")
    crash(azurite, "orchestrations", hub, kill_at, "--copies", "3")

    async def make(**kwargs: Any) -> LocalHost:
        return await make_local_host(apps.app, start=START, **kwargs)

    host = await make(task_hub=hub)
    await host.run_until_idle()
    expected = await uninterrupted_shapes(make, unique, ids)
    for instance_id in ids:
        status = await host.get_status(instance_id)
        assert status is not None and status.runtime_status == "Completed", instance_id
        history = await host.get_history(instance_id)
        assert_recorded_once(history)
        assert shape(history) == expected[instance_id], instance_id


async def test_activity_whose_result_was_not_recorded_runs_again_once(
    azurite: Azurite, make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    crash(azurite, "orchestrations", hub, "activity-finished:1", "--copies", "1", "--only", "chain")
    host = await make_host(task_hub=hub)
    await host.run_until_idle()
    assert apps.calls[("hello", "a")] == 1  # ran in the killed process, its result lost: ran again here
    assert apps.calls[("hello", "b")] == 1
    history = await host.get_history("chain-0")
    assert_recorded_once(history)
    assert [e["Result"] for e in history if e["EventType"] == EventType.TaskCompleted] == [
        '"hello a"',
        '"hello b"',
    ]


async def test_kill_after_starts_leaves_exactly_the_started_instances(
    azurite: Azurite, make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    crash(azurite, "orchestrations", hub, "instance-started:3", "--copies", "1")
    host = await make_host(task_hub=hub)
    await host.run_until_idle()
    statuses, _ = await host.management.query(InstanceQuery(), page_size=100, continuation=None)
    started = sorted(
        s.instance_id for s in statuses if s.instance_id.endswith("-0") and "child" not in s.instance_id
    )
    assert started == sorted(list(orchestration_ids(1))[:3])
    assert {s.runtime_status for s in statuses} == {"Completed"}


async def test_the_clock_resumes_from_the_last_time_written_before_the_kill(
    azurite: Azurite, make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    # write 1: the start time; write 2: the timer's fire time, just before the clock moves there
    crash(azurite, "orchestrations", hub, "clock-written:2", "--copies", "1", "--only", "sleeper")
    host = await make_host(task_hub=hub, clock=VirtualClock(START))
    assert host.clock.now() == START + timedelta(minutes=40)
    await host.run_until_idle()
    history = await host.get_history("sleeper-0")
    assert_recorded_once(history)
    fired = next(e for e in history if e["EventType"] == EventType.TimerFired)
    assert fired["Timestamp"] == "2026-11-22T10:40:00.000000Z"
    assert host.clock.now() == START + timedelta(minutes=40)


@pytest.mark.parametrize(
    ("kill_at", "delivered_twice"),
    [("batch-processed:2", {3, 4, 5}), ("checkpoint-written:2", set())],
)
async def test_event_hub_delivery_resumes_after_the_checkpoint(
    azurite: Azurite,
    make_host: MakeHost,
    unique: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kill_at: str,
    delivered_twice: set[int],
) -> None:
    hub, namespace, log = unique("hub"), unique("ns"), tmp_path / "deliveries.log"
    monkeypatch.setenv(apps.DELIVERY_LOG, str(log))
    crash(
        azurite,
        "eventhub",
        hub,
        kill_at,
        *("--events", "10", "--namespace", namespace, "--app-root", str(tmp_path / "child")),
    )
    (tmp_path / "host.json").write_text('{"extensions": {"eventHubs": {"maxEventBatchSize": 3}}}')
    host = await make_host(
        apps.eh_app, task_hub=hub, settings_env=event_hub_settings(namespace), app_root=tmp_path
    )
    await host.deliver_partition("ledger", "0", event_source(10))
    counts = Counter(int(line) for line in log.read_text().split())
    assert sorted(counts) == list(range(10))  # nothing lost
    assert {n for n, c in counts.items() if c == 2} == delivered_twice  # only the uncheckpointed batch
    assert set(counts.values()) <= {1, 2}
    checkpoint = await host.checkpoint("ledger", "0", "ledger")
    assert checkpoint is not None and checkpoint.sequence_number == 9
