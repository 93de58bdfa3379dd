"""One clock for everything the app reads as "now": the host's virtual clock, stored with the task
hub and resumed from there, never backwards."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from local_host import VirtualClock
from shared.clock import WALL_CLOCK, current_clock
from tests.local_host import local_host_apps as apps
from tests.local_host.local_host_apps import START, MakeHost

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]


async def test_the_app_reads_the_virtual_clock(make_host: MakeHost) -> None:
    host = await make_host()
    assert current_clock() is host.clock
    await host.start_orchestration("clock_reader", instance_id="reader")
    await host.run_until_idle()
    status = await host.get_status("reader")
    assert status is not None and status.runtime_status == "Completed"
    before, after = (datetime.fromisoformat(t) for t in json.loads(status.output or "[]"))
    assert before == START
    assert after == START + timedelta(hours=25)  # the durable timer, as the activity saw it
    await host.stop()
    assert current_clock() is WALL_CLOCK


async def test_a_restarted_host_resumes_the_stored_time(
    make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    first = await make_host(task_hub=hub)
    await first.start_orchestration("sleeper", 40, instance_id="nap")
    await first.run_until_idle()
    assert first.clock.now() == START + timedelta(minutes=40)
    await first.stop()

    earlier = await make_host(task_hub=hub, clock=VirtualClock(START - timedelta(days=1)))
    assert earlier.clock.now() == START + timedelta(minutes=40)  # never backwards
    await earlier.stop()
    later = await make_host(task_hub=hub, clock=VirtualClock(START + timedelta(days=3)))
    assert later.clock.now() == START + timedelta(days=3)  # a later start time is kept
    await later.stop()
    again = await make_host(task_hub=hub, clock=VirtualClock(START))
    assert again.clock.now() == START + timedelta(days=3)


async def test_retry_delays_of_triggers_are_stored_time(
    make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    first = await make_host(apps.eh_app, task_hub=hub, settings_env={"CLAIMS_HUB": "claims"})
    await first.deliver_event_hub("poison", ["x"])  # fails 3 times, 1 s and 2 s apart
    await first.stop()
    second = await make_host(
        apps.eh_app, task_hub=hub, settings_env={"CLAIMS_HUB": "claims"}, clock=VirtualClock(START)
    )
    assert second.clock.now() == START + timedelta(seconds=3)
