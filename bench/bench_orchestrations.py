"""Orchestrations/s through the local host, as a ratio against the raw SDK replay in the same run.

Raw baseline: the SDK orchestrator handle called directly on prebuilt histories (the three episodes
of a two-activity chain), no storage, no activities. Local host: the same orchestrator started,
replayed, its activities run and every episode written to Azurite, until idle; one smaller run on
another task hub first, so both sides are measured warm. Three rounds of each, the raw ones before
Azurite starts; the medians are printed (the machine is shared, single rounds vary by 2x). Also
printed: the storage writes per recorded episode (each episode is one instance-row write, grouped
into entity-group transactions).

Run: .venv/bin/python bench/bench_orchestrations.py [instances]
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import median
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from dateutil.parser import parse as dateutil_parse

from claimsflow.azurite import Azurite
from local_host import LocalHost, VirtualClock
from local_host.history import EventType, event, install_timestamp_cache
from local_host.indexing import app_functions

START = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
ROUNDS = 3
app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext) -> Any:
    first = yield context.call_activity("greet", "a")
    second = yield context.call_activity("greet", "b")
    return [first, second]


@app.activity_trigger(input_name="name")
def greet(name: str) -> str:
    return f"hello {name}"


def prebuilt_contexts(instance_id: str) -> list[str]:
    """The three context payloads of one chain instance, as the host would send them."""
    played = lambda events: [{**e, "IsPlayed": True} for e in events]  # noqa: E731
    started = [
        event(EventType.OrchestratorStarted, START),
        event(EventType.ExecutionStarted, START, Name="chain", Version="", Input=None),
    ]
    first = [
        event(EventType.TaskScheduled, START, 0, Name="greet", Input='"a"'),
        event(EventType.OrchestratorCompleted, START),
    ]
    second_new = [
        event(EventType.OrchestratorStarted, START),
        event(EventType.TaskCompleted, START, TaskScheduledId=0, Result='"hello a"'),
    ]
    second = [
        event(EventType.TaskScheduled, START, 1, Name="greet", Input='"b"'),
        event(EventType.OrchestratorCompleted, START),
    ]
    third_new = [
        event(EventType.OrchestratorStarted, START),
        event(EventType.TaskCompleted, START, TaskScheduledId=1, Result='"hello b"'),
    ]
    histories = [
        started,
        played(started + first) + second_new,
        played(started + first + second_new + second) + third_new,
    ]
    base = {
        "input": None,
        "instanceId": instance_id,
        "isReplaying": False,
        "parentInstanceId": None,
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
    }
    return [json.dumps({**base, "history": h}) for h in histories]


def raw_rate(handle: Any, count: int) -> float:
    contexts = [prebuilt_contexts(f"raw{i}") for i in range(count)]
    began = time.perf_counter()
    for episodes in contexts:
        for context in episodes:
            handle(context)
    state = json.loads(handle(contexts[0][2]))
    assert state["isDone"] and state["output"] == ["hello a", "hello b"]
    return count / (time.perf_counter() - began)


@dataclass(frozen=True)
class HostRun:
    rate: float
    episodes: int
    starts: int
    rows: int
    transactions: int


async def host_run(connection_string: str, count: int, task_hub: str) -> HostRun:
    host = LocalHost(
        app,
        connection_string=connection_string,
        settings_env={},
        clock=VirtualClock(START),
        task_hub=task_hub,
    )
    await host.start()
    try:
        began = time.perf_counter()
        # Starts arrive concurrently, as from an Event Hub batch.
        await asyncio.gather(*(host.management.start("chain", f"bench-{i}", None) for i in range(count)))
        await host.run_until_idle()
        elapsed = time.perf_counter() - began
        status = await host.get_status(f"bench-{count - 1}")
        assert status is not None and status.runtime_status == "Completed"
        counters = host.store.counters
        episodes = host.scheduler.recorded_episodes
        assert episodes == 3 * count
        return HostRun(count / elapsed, episodes, count, counters.rows, counters.transactions)
    finally:
        await host.stop()


async def host_rate(connection_string: str, count: int) -> HostRun:
    stamp = time.time_ns()
    await host_run(connection_string, max(count // 4, 20), f"warm{stamp}")
    return await host_run(connection_string, count, f"bench{stamp}")


def raw_rates(handle: Any, count: int) -> tuple[float, float]:
    """Raw replay with dateutil as shipped, then with the host's memoised timestamp parsing."""
    history_event = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")
    history_event.dt_parse = dateutil_parse  # type: ignore[attr-defined]
    shipped = raw_rate(handle, count)
    install_timestamp_cache()
    return shipped, raw_rate(handle, count)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    handle = next(f for f in app_functions(app) if f.get_function_name() == "chain").get_user_function()
    raw = [raw_rates(handle, count) for _ in range(ROUNDS)]  # before Azurite runs: nothing competes
    azurite = Azurite.start()
    try:
        runs = [asyncio.run(host_rate(azurite.connection_string, count)) for _ in range(ROUNDS)]
    finally:
        azurite.stop()
    shipped, cached = median(r[0] for r in raw), median(r[1] for r in raw)
    hosted = median(run.rate for run in runs)
    print(f"instances: {count} (2-activity chain, 3 episodes each); medians of {ROUNDS} rounds")
    print(f"raw SDK replay, dateutil as shipped : {shipped:9.1f} orchestrations/s")
    print(f"raw SDK replay, memoised timestamps : {cached:9.1f} orchestrations/s")
    print(f"local host (activities + Azurite)   : {hosted:9.1f} orchestrations/s")
    print(f"ratio local host / raw (as shipped) : {hosted / shipped:9.3f}")
    print(f"ratio local host / raw (memoised)   : {hosted / cached:9.3f}")
    run = runs[-1]
    print(
        f"storage: {run.rows} instance-row writes for {run.episodes} episodes + {run.starts} starts "
        f"({(run.rows - run.starts) / run.episodes:.2f} per episode, history and state in that one row), "
        f"in {run.transactions} entity-group transactions ({run.rows / run.transactions:.1f} rows each, "
        f"{run.transactions / (run.episodes + run.starts):.2f} per write)"
    )


if __name__ == "__main__":
    main()
