"""Starting and purging orchestrations through the real Durable client and management API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from local_host import LocalHost
from shared.durable import DurableStarter, purge_finished_instances
from shared.errors import ClassifiedError, ErrorCategory

pytestmark = pytest.mark.azurite

START = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.orchestration_trigger(context_name="context")
def waits_for_approval(context: df.DurableOrchestrationContext) -> Any:
    if context.get_input() == "wait":
        yield context.wait_for_external_event("approval")
    if context.get_input() == "fail":
        raise RuntimeError("could not record the outcome")
    return "done"


@pytest.fixture
async def host(make_local_host: Callable[..., Awaitable[LocalHost]]) -> LocalHost:
    return await make_local_host(app, start=START)


async def test_completed_instances_older_than_the_retention_are_purged_failed_ones_kept(
    host: LocalHost,
) -> None:
    for n in range(3):
        await host.start_orchestration("waits_for_approval", "go", instance_id=f"old-{n}")
    await host.start_orchestration("waits_for_approval", "wait", instance_id="old-running")
    await host.start_orchestration("waits_for_approval", "fail", instance_id="old-failed")
    await host.run_until_idle()
    host.clock.advance(timedelta(days=10))
    await host.start_orchestration("waits_for_approval", "go", instance_id="recent")
    await host.run_until_idle()

    purged = await purge_finished_instances(
        host.durable_client(), now=START + timedelta(days=31), retention=timedelta(days=30)
    )
    assert purged == 3
    for n in range(3):
        assert await host.get_status(f"old-{n}") is None
    failed = await host.get_status("old-failed")  # it may hold the only record: kept for on-call
    assert failed is not None and failed.runtime_status == "Failed"
    running = await host.get_status("old-running")
    assert running is not None and running.runtime_status == "Running"
    recent = await host.get_status("recent")
    assert recent is not None and recent.runtime_status == "Completed"


class HeldStarts:
    """The real Durable client, with each start held until both deliveries have checked for the
    instance, then sent one after the other: the check-then-start race of two deliveries of one
    event, made certain (the second start meets the first one's instance)."""

    def __init__(self, client: Any, barrier: asyncio.Barrier, turns: asyncio.Lock) -> None:
        self._client = client
        self._barrier = barrier
        self._turns = turns

    async def get_status(self, instance_id: str) -> Any:
        return await self._client.get_status(instance_id)

    async def start_new(self, orchestration_function_name: str, instance_id: str, client_input: Any) -> str:
        await self._barrier.wait()
        async with self._turns:
            return str(await self._client.start_new(orchestration_function_name, instance_id, client_input))

    async def purge_instance_history_by(self, **kwargs: Any) -> Any:
        return await self._client.purge_instance_history_by(**kwargs)


async def test_a_concurrent_start_by_the_same_event_is_success(host: LocalHost) -> None:
    """Two deliveries of one event both find no instance and both start it: the management API
    answers the second with 409, and that start counts as success (False: not started by it)."""
    barrier, turns = asyncio.Barrier(2), asyncio.Lock()
    starters = [DurableStarter(HeldStarts(host.durable_client(), barrier, turns)) for _ in range(2)]
    results = await asyncio.gather(*(s.start_once("waits_for_approval", "race-1", "wait") for s in starters))
    assert sorted(results) == [False, True]
    status = await host.get_status("race-1")
    assert status is not None and status.runtime_status in ("Pending", "Running")


async def test_a_concurrent_rerun_of_a_finished_instance_starts_it_once(host: LocalHost) -> None:
    await host.start_orchestration("waits_for_approval", "go", instance_id="race-2")
    await host.run_until_idle()
    barrier, turns = asyncio.Barrier(2), asyncio.Lock()
    starters = [DurableStarter(HeldStarts(host.durable_client(), barrier, turns)) for _ in range(2)]
    results = await asyncio.gather(
        *(s.start_once("waits_for_approval", "race-2", "wait", rerun_finished=True) for s in starters)
    )
    assert sorted(results) == [False, True]


async def test_a_start_that_fails_for_another_reason_is_transient(host: LocalHost) -> None:
    """The extension refusing a start (here: no such orchestrator in this deployment) is retried,
    never blamed on the event."""
    with pytest.raises(ClassifiedError) as caught:
        await DurableStarter(host.durable_client()).start_once("no_such_orchestrator", "x-1", {})
    assert caught.value.failure.category is ErrorCategory.TRANSIENT
    assert await host.get_status("x-1") is None
