"""Resuming from storage after a stop, Event Hub delivery with retry policies, timer triggers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from local_host import IndexingError, LocalHost, VirtualClock
from tests.local_host import local_host_apps as apps
from tests.local_host.local_host_apps import START, MakeHost

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]


async def test_new_host_resumes_unfinished_instances(
    make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    first = await make_host(task_hub=hub)
    for key in ("k1", "k2", "k3"):
        await first.start_orchestration("two_steps", key, instance_id=key)
    await first.start_orchestration("fan_out", ["x", "y"], instance_id="fan")
    await first.start_orchestration("gated", instance_id="gated")
    apps.GATE["open"] = False
    runner = asyncio.create_task(first.run_until_idle(advance_clock=False))
    # fan's activities complete and its instance finishes while gate's activity is still held:
    # no instance waits for another instance's activity
    while (fan := await first.management.status("fan")) is None or fan.runtime_status != "Completed":
        await asyncio.sleep(0.01)
    assert apps.calls[("gate", "g")] == 1
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    for key in ("k1", "k2", "k3", "gated"):
        status = await first.management.status(key)
        assert status is not None and status.runtime_status in ("Pending", "Running")
    await first.stop()  # writes what memory holds; the held activity is abandoned

    apps.GATE["open"] = True
    second = await make_host(task_hub=hub, clock=VirtualClock(first.clock.now()))
    await second.run_until_idle()
    for key in ("k1", "k2", "k3", "fan", "gated"):
        status = await second.get_status(key)
        assert status is not None and status.runtime_status == "Completed", key
    for key in ("k1", "k2", "k3"):
        assert apps.calls[("record", f"{key}:before")] == 1  # completed before the stop: not run again
        assert apps.calls[("record", f"{key}:after")] == 1
    assert apps.calls[("hello", "x")] == apps.calls[("hello", "y")] == 1
    assert apps.calls[("gate", "g")] == 2  # in flight at the stop: re-run (at least once, as in Azure)
    assert second.clock.now() == START + timedelta(minutes=10)


async def test_event_hub_batch_is_redelivered_under_the_retry_policy(make_host: MakeHost) -> None:
    apps.deliveries.clear()
    host = await make_host(apps.eh_app, settings_env={"CLAIMS_HUB": "claims"})
    bodies = [b'{"id": 1}', '{"id": 2}']
    outcomes = await host.deliver_event_hub("claims", bodies, partition_id="3", partition_key="pk-1")
    assert [(o.function_name, o.attempts, o.succeeded) for o in outcomes] == [("ingest", 2, True)]
    assert isinstance(outcomes[0].errors[0], ConnectionError)
    assert host.clock.now() == START + timedelta(seconds=10)  # the fixed delay passed on the virtual clock
    first, second = apps.deliveries
    for batch in (first, second):
        assert [e.get_body() for e in batch] == [b'{"id": 1}', b'{"id": 2}']
        assert [e.sequence_number for e in batch] == [0, 1]
        assert [e.offset for e in batch] == [0, 9]
        assert {e.partition_key for e in batch} == {"pk-1"}
        assert {e.enqueued_time for e in batch} == {START}
        metadata = batch[0].metadata
        assert metadata is not None
        assert metadata["PartitionContext"]["PartitionId"] == "3"
        assert metadata["PartitionContext"]["EventHubName"] == "claims"
        assert [p["SequenceNumber"] for p in metadata["SystemPropertiesArray"]] == [0, 1]
    await host.run_until_idle()
    status = await host.get_status("echo-1")
    assert status is not None and json.loads(status.output or "null") == '{"ID": 2}'  # the body text
    outcomes = await host.deliver_event_hub("claims", ["next"], partition_id="3")
    assert apps.deliveries[-1][0].sequence_number == 2


async def test_event_hub_batch_is_given_up_after_the_last_retry(make_host: MakeHost) -> None:
    host = await make_host(apps.eh_app, settings_env={"CLAIMS_HUB": "claims"})
    [outcome] = await host.deliver_event_hub("poison", ["x"])
    assert (outcome.attempts, outcome.succeeded, outcome.gave_up) == (3, False, True)
    assert isinstance(outcome.last_error, ValueError)
    assert host.clock.now() == START + timedelta(seconds=1 + 2)  # exponential: 1 s, then 2 s


async def test_timer_triggers_fire_now_and_on_schedule(make_host: MakeHost) -> None:
    apps.ticks.clear()
    host = await make_host(apps.eh_app, settings_env={"CLAIMS_HUB": "claims"}, schedule_timers=True)
    outcome = await host.fire_timer("tick")
    assert outcome.succeeded and len(apps.ticks) == 1
    assert apps.ticks[0].past_due is False
    await host.run_until(START + timedelta(minutes=16))
    assert len(apps.ticks) == 4  # fired now, then at :05, :10 and :15
    assert host.clock.now() == START + timedelta(minutes=16)


def test_unresolved_setting_fails_indexing(azurite: object) -> None:
    with pytest.raises(IndexingError, match="CLAIMS_HUB"):
        LocalHost(
            apps.eh_app,
            connection_string="UseDevelopmentStorage=true",
            settings_env={},
            clock=VirtualClock(START),
        )
