"""The ClaimX orchestrators under the real Durable SDK replay (local host), with scripted
activities: waiting for an open circuit without spending retries, the cap on such waits, retries
by class, record steps retried and a record that keeps failing failing the instance."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from local_host import EventType, LocalHost
from shared.claimx.orchestration import (
    CIRCUIT_WAITS,
    EVENT_ORCHESTRATOR,
    event_orchestrator,
    media_orchestrator,
)
from shared.errors import ErrorCategory, Failure
from shared.retry import failed, ok, refused_until

pytestmark = pytest.mark.azurite

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Script:
    enrich: list[Any] = []
    download: list[Any] = []
    record: list[Any] = []
    recorded: list[dict[str, Any]] = []
    event_failures: list[dict[str, Any]] = []
    in_blob: list[dict[str, Any]] = []

    @classmethod
    def reset(
        cls, *, enrich: list[Any], download: list[Any] | None = None, record: list[Any] | None = None
    ) -> None:
        cls.enrich, cls.download = list(enrich), list(download or [ok({"bytes": 1})])
        cls.record = list(record or [None])
        cls.recorded, cls.event_failures, cls.in_blob = [], [], []


def answer(queue: list[Any]) -> Any:
    item = queue.pop(0) if len(queue) > 1 else queue[0]
    if isinstance(item, Exception):
        raise item
    return item


app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.orchestration_trigger(context_name="context")
def claimx_event_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    return (yield from event_orchestrator(context))


@app.orchestration_trigger(context_name="context")
def claimx_media_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    return (yield from media_orchestrator(context))


@app.activity_trigger(input_name="event")
def claimx_enrich(event: dict[str, Any]) -> dict[str, Any]:
    return answer(Script.enrich)  # type: ignore[no-any-return]


@app.activity_trigger(input_name="task")
def claimx_download(task: dict[str, Any]) -> dict[str, Any]:
    return answer(Script.download)  # type: ignore[no-any-return]


@app.activity_trigger(input_name="payload")
def claimx_record_media_failure(payload: dict[str, Any]) -> dict[str, Any]:
    answer(Script.record)
    Script.recorded.append(payload["record"])
    return ok("exhausted" if payload["record"]["exhausted"] else "failed_permanent")


@app.activity_trigger(input_name="payload")
def claimx_record_event_failure(payload: dict[str, Any]) -> dict[str, Any]:
    answer(Script.record)
    Script.event_failures.append(payload["record"])
    return ok(None)


@app.activity_trigger(input_name="payload")
def claimx_dead_letter_in_blob(payload: dict[str, Any]) -> dict[str, Any]:
    Script.in_blob.append(payload["record"])
    return ok(None)


EVENT = {
    "trace_id": "t-1",
    "event_type": "PROJECT_FILE_ADDED",
    "project_id": "5",
    "ingested_at": "2026-11-23T07:00:00+00:00",
    "media_id": "9",
    "retry_delays": [300, 600, 1200, 2400],
}
TASK = {"media_id": "9", "trace_id": "t-1", "project_id": "5", "url": "https://h/m/9"}
TRANSIENT = failed(Failure.of(ErrorCategory.TRANSIENT, "503", 503))
PERMANENT = failed(Failure.of(ErrorCategory.PERMANENT, "404", 404))
CIRCUIT = Failure.of(ErrorCategory.CIRCUIT_OPEN, "circuit claimx_api is open")


def refused(seconds: float) -> dict[str, Any]:
    return refused_until(CIRCUIT, START + timedelta(seconds=seconds))


@pytest.fixture
async def host(make_local_host: Callable[..., Awaitable[LocalHost]]) -> LocalHost:
    return await make_local_host(app, start=START)


async def run(host: LocalHost) -> Any:
    instance_id = await host.start_orchestration(EVENT_ORCHESTRATOR, EVENT, instance_id="claimx-t-1")
    await host.run_until_idle()
    return await host.get_status(instance_id)


def timer_offsets(history: list[dict[str, Any]]) -> list[timedelta]:
    return [
        datetime.fromisoformat(e["FireAt"]) - START
        for e in history
        if e["EventType"] == EventType.TimerCreated
    ]


async def test_an_open_circuit_is_waited_for_without_spending_retries(host: LocalHost) -> None:
    Script.reset(enrich=[refused(60), refused(75), ok({"downloads": [TASK], "rejected": 0})])
    status = await run(host)
    assert status.runtime_status == "Completed"
    assert '"retry_count": 0' in status.output
    assert timer_offsets(await host.get_history("claimx-t-1")) == [
        timedelta(seconds=60),
        timedelta(seconds=75),
    ]
    child = await host.get_status("claimx-t-1:9")
    assert child is not None and '"status": "uploaded"' in child.output and '"retry_count": 0' in child.output
    assert Script.recorded == []


async def test_real_failures_still_spend_retries_between_circuit_waits(host: LocalHost) -> None:
    Script.reset(enrich=[TRANSIENT, refused(400), ok({"downloads": [], "rejected": 0})])
    status = await run(host)
    assert '"retry_count": 1' in status.output
    assert timer_offsets(await host.get_history("claimx-t-1")) == [
        timedelta(minutes=5),
        timedelta(seconds=400),
    ]


async def test_a_refusal_in_the_past_still_waits_a_moment(host: LocalHost) -> None:
    Script.reset(enrich=[refused(-30), ok({"downloads": [], "rejected": 0})])
    await run(host)
    assert timer_offsets(await host.get_history("claimx-t-1")) == [timedelta(seconds=1)]


async def test_after_the_cap_an_open_circuit_spends_retries(host: LocalHost) -> None:
    Script.reset(enrich=[refused(0)])  # the circuit never closes: every refusal comes at once
    status = await run(host)
    assert status.runtime_status == "Completed"
    [failure] = Script.event_failures
    assert failure["retry_count"] == 4 and failure["failure"]["category"] == "circuit_open"
    offsets = timer_offsets(await host.get_history("claimx-t-1"))
    assert len(offsets) == CIRCUIT_WAITS + 4


async def test_media_download_waits_for_the_circuit_too(host: LocalHost) -> None:
    Script.reset(enrich=[ok({"downloads": [TASK], "rejected": 0})], download=[refused(90), ok({"bytes": 3})])
    await run(host)
    assert timer_offsets(await host.get_history("claimx-t-1:9")) == [timedelta(seconds=90)]
    child = await host.get_status("claimx-t-1:9")
    assert child is not None and '"retry_count": 0' in child.output


async def test_a_failed_download_is_recorded_with_its_retries(host: LocalHost) -> None:
    Script.reset(enrich=[ok({"downloads": [TASK], "rejected": 0})], download=[TRANSIENT])
    await run(host)
    [record] = Script.recorded
    assert (record["kind"], record["retry_count"], record["exhausted"]) == ("media", 4, True)


async def test_a_record_step_is_retried_by_class(host: LocalHost) -> None:
    Script.reset(
        enrich=[ok({"downloads": [TASK], "rejected": 0})],
        download=[PERMANENT],
        record=[RuntimeError("table service unavailable"), None],
    )
    status = await run(host)
    assert status.runtime_status == "Completed"
    assert len(Script.recorded) == 1 and Script.in_blob == []
    assert timer_offsets(await host.get_history("claimx-t-1:9")) == [timedelta(minutes=5)]


async def test_a_record_that_keeps_failing_goes_to_the_blob_and_fails_the_instance(host: LocalHost) -> None:
    Script.reset(
        enrich=[ok({"downloads": [TASK], "rejected": 0})],
        download=[PERMANENT],
        record=[RuntimeError("table service down")],
    )
    status = await run(host)
    child = await host.get_status("claimx-t-1:9")
    assert child is not None and child.runtime_status == "Failed"
    assert "claimx_record_media_failure failed for good" in str(child.output)
    [saved] = Script.in_blob
    assert saved["task"]["media_id"] == "9" and saved["unrecorded_because"]["category"] == "unknown"
    assert status.runtime_status == "Failed"
