"""Starting and purging orchestrations through the real Durable client and management API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from local_host import LocalHost
from shared.durable import purge_finished_instances

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
