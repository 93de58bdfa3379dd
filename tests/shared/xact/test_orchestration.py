"""The XACT orchestrators under the real Durable SDK replay (local host), with scripted activities:
retry by error class, timers, exhaustion, enrich failure, plugin termination, and record steps that
fail (retried by class, then the blob fallback and a failed instance)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from local_host import EventType, LocalHost
from shared.durable import DurableStarter
from shared.errors import ErrorCategory, Failure
from shared.retry import failed, ok
from shared.xact.orchestration import (
    ATTACHMENT_ORCHESTRATOR,
    EVENT_ORCHESTRATOR,
    attachment_orchestrator,
    event_orchestrator,
)

pytestmark = pytest.mark.azurite

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Script:
    """What the activities answer, and what they were asked."""

    enrich: list[Any] = []
    transfer: list[Any] = []
    record: list[Any] = []
    fallback: list[Any] = []
    recorded: list[dict[str, Any]] = []
    event_failures: list[dict[str, Any]] = []
    in_blob: list[dict[str, Any]] = []

    @classmethod
    def reset(
        cls,
        *,
        enrich: list[Any],
        transfer: list[Any],
        record: list[Any] | None = None,
        fallback: list[Any] | None = None,
    ) -> None:
        cls.enrich, cls.transfer = list(enrich), list(transfer)
        cls.record, cls.fallback = list(record or [ok("recorded")]), list(fallback or [ok()])
        cls.recorded, cls.event_failures, cls.in_blob = [], [], []


def answer(queue: list[Any]) -> Any:
    item = queue.pop(0) if len(queue) > 1 else queue[0]
    if isinstance(item, Exception):
        raise item
    return item


app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.orchestration_trigger(context_name="context")
def xact_event_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    return (yield from event_orchestrator(context))


@app.orchestration_trigger(context_name="context")
def xact_attachment_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    return (yield from attachment_orchestrator(context))


@app.activity_trigger(input_name="event")
def xact_enrich(event: dict[str, Any]) -> dict[str, Any]:
    return answer(Script.enrich)  # type: ignore[no-any-return]


@app.activity_trigger(input_name="task")
def xact_transfer(task: dict[str, Any]) -> dict[str, Any]:
    return answer(Script.transfer)  # type: ignore[no-any-return]


@app.activity_trigger(input_name="payload")
def xact_record_attachment_failure(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = answer(Script.record)
    if outcome["ok"]:
        Script.recorded.append(payload["record"])
        return ok("exhausted" if payload["record"]["exhausted"] else "failed_permanent")
    return outcome  # type: ignore[no-any-return]


@app.activity_trigger(input_name="payload")
def xact_record_event_failure(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = answer(Script.record)
    if outcome["ok"]:
        Script.event_failures.append(payload["record"])
    return outcome  # type: ignore[no-any-return]


@app.activity_trigger(input_name="payload")
def xact_dead_letter_in_blob(payload: dict[str, Any]) -> dict[str, Any]:
    outcome = answer(Script.fallback)
    if outcome["ok"]:
        Script.in_blob.append(payload["record"])
    return outcome  # type: ignore[no-any-return]


EVENT = {
    "trace_id": "t-1",
    "event_id": "e-1",
    "status_subtype": "documentsReceived",
    "assignment_id": "A1",
    "estimate_version": None,
    "attachments": ["https://h/a.pdf"],
    "event_date": "2026-11-22",
    "occurred_at": "2026-11-22T15:04:05+00:00",
    "retry_delays": [300, 600, 1200, 2400],
}
TASK = {"media_id": "m-1", "trace_id": "t-1", "attachment_url": "https://h/a.pdf", "blob_path": "p/a.pdf"}
TRANSIENT = failed(Failure.of(ErrorCategory.TRANSIENT, "503 Service Unavailable", 503))
PERMANENT = failed(Failure.of(ErrorCategory.PERMANENT, "404 Not Found", 404))


@pytest.fixture
async def host(make_local_host: Callable[..., Awaitable[LocalHost]]) -> LocalHost:
    return await make_local_host(app, start=START)


async def run(host: LocalHost, event: dict[str, Any] | None = None) -> Any:
    instance_id = await host.start_orchestration(EVENT_ORCHESTRATOR, event or EVENT, instance_id="xact-e-1")
    await host.run_until_idle()
    return await host.get_status(instance_id)


def timer_offsets(history: list[dict[str, Any]]) -> list[timedelta]:
    return [
        datetime.fromisoformat(e["FireAt"]) - START
        for e in history
        if e["EventType"] == EventType.TimerCreated
    ]


def child_output(status: Any) -> list[dict[str, Any]]:
    return json.loads(status.output)["attachments"]  # type: ignore[no-any-return]


async def test_transient_twice_then_success(host: LocalHost) -> None:
    Script.reset(
        enrich=[ok({"downloads": [TASK], "rejected": 0})], transfer=[TRANSIENT, TRANSIENT, ok({"bytes": 1})]
    )
    status = await run(host)
    assert status.runtime_status == "Completed"
    assert child_output(status) == [{"media_id": "m-1", "status": "uploaded", "retry_count": 2}]
    assert Script.recorded == []  # the transfer activity staged its own row
    history = await host.get_history("xact-e-1:m-1")
    assert timer_offsets(history) == [timedelta(minutes=5), timedelta(minutes=15)]


async def test_exhausted_after_four_retries_at_5_10_20_40_minutes(host: LocalHost) -> None:
    Script.reset(enrich=[ok({"downloads": [TASK], "rejected": 0})], transfer=[TRANSIENT])
    status = await run(host)
    [record] = Script.recorded
    assert (record["retry_count"], record["exhausted"], record["kind"]) == (4, True, "attachment")
    assert child_output(status)[0]["status"] == "exhausted"
    history = await host.get_history("xact-e-1:m-1")
    # each timer waits its delay after the failure that preceded it: +5, +10, +20, +40 minutes
    assert timer_offsets(history) == [timedelta(minutes=m) for m in (5, 15, 35, 75)]


async def test_permanent_stops_at_once_without_timer(host: LocalHost) -> None:
    Script.reset(enrich=[ok({"downloads": [TASK], "rejected": 0})], transfer=[PERMANENT])
    await run(host)
    [record] = Script.recorded
    assert (record["retry_count"], record["exhausted"]) == (0, False)
    assert timer_offsets(await host.get_history("xact-e-1:m-1")) == []


async def test_activity_exception_counts_as_unknown_and_is_retried(host: LocalHost) -> None:
    Script.reset(
        enrich=[ok({"downloads": [TASK], "rejected": 0})],
        transfer=[RuntimeError("boom at https://h/a.pdf?X-Amz-Signature=SECRET"), ok({"bytes": 1})],
    )
    status = await run(host)
    assert child_output(status) == [{"media_id": "m-1", "status": "uploaded", "retry_count": 1}]


async def test_a_record_step_that_fails_is_retried_by_class(host: LocalHost) -> None:
    Script.reset(
        enrich=[ok({"downloads": [TASK], "rejected": 0})],
        transfer=[PERMANENT],
        record=[TRANSIENT, ok("recorded")],
    )
    status = await run(host)
    assert status.runtime_status == "Completed"
    [record] = Script.recorded
    assert record["retry_count"] == 0  # the transfer's retries, not the record step's
    assert Script.in_blob == []
    # the transfer failed permanently (no timer); the record step waited 5 minutes once
    assert timer_offsets(await host.get_history("xact-e-1:m-1")) == [timedelta(minutes=5)]


async def test_a_record_step_failing_for_good_leaves_a_blob_dead_letter_and_a_failed_instance(
    host: LocalHost,
) -> None:
    Script.reset(enrich=[ok({"downloads": [TASK], "rejected": 0})], transfer=[PERMANENT], record=[TRANSIENT])
    status = await run(host)
    child = await host.get_status("xact-e-1:m-1")
    assert child is not None and child.runtime_status == "Failed"
    assert "xact_record_attachment_failure failed for good" in str(child.output)
    assert "its dead letter was written to blob storage" in str(child.output)
    [kept] = Script.in_blob
    assert kept["task"]["media_id"] == "m-1"
    assert kept["unrecorded_because"]["category"] == "transient"
    assert status.runtime_status == "Failed"  # the parent shows it too


async def test_when_the_blob_fallback_fails_too_the_history_holds_the_record(host: LocalHost) -> None:
    Script.reset(
        enrich=[RuntimeError("staging unavailable")],
        transfer=[ok({})],
        record=[TRANSIENT],
        fallback=[TRANSIENT],
    )
    status = await run(host)
    assert status.runtime_status == "Failed"
    assert "the blob fallback failed too" in str(status.output)
    assert Script.event_failures == [] and Script.in_blob == []
    history = await host.get_history("xact-e-1")
    [last] = [e for e in history if e.get("Name") == "xact_dead_letter_in_blob"][-1:]
    kept = json.loads(last["Input"])["record"]  # the record, in the history of the failed instance
    assert kept["kind"] == "event" and kept["event"]["trace_id"] == "t-1"


async def test_enrich_failing_for_good_dead_letters_the_event(host: LocalHost) -> None:
    Script.reset(enrich=[RuntimeError("staging unavailable")], transfer=[ok({"bytes": 1})])
    status = await run(host)
    assert status.runtime_status == "Completed"
    [failure] = Script.event_failures
    assert failure["retry_count"] == 4
    assert failure["failure"]["category"] == "unknown"
    assert Script.recorded == []


async def test_fan_out_one_sub_orchestration_per_attachment(host: LocalHost) -> None:
    tasks = [{**TASK, "media_id": f"m-{n}"} for n in range(5)]
    Script.reset(enrich=[ok({"downloads": tasks, "rejected": 1})], transfer=[ok({"bytes": 1})])
    status = await run(host)
    assert status.runtime_status == "Completed"
    assert sorted(r["media_id"] for r in child_output(status)) == [f"m-{n}" for n in range(5)]
    for n in range(5):
        child = await host.get_status(f"xact-e-1:m-{n}")
        assert child is not None and child.name == ATTACHMENT_ORCHESTRATOR


async def test_terminated_by_plugin_creates_no_downloads(host: LocalHost) -> None:
    Script.reset(enrich=[ok({"downloads": [], "rejected": 0, "terminated": True})], transfer=[ok({})])
    status = await run(host)
    assert '"status": "terminated"' in status.output
    assert Script.recorded == []


async def test_starter_starts_once_unless_the_event_is_new_again(host: LocalHost) -> None:
    """``DurableStarter`` through the real ``DurableOrchestrationClient`` and management API."""
    Script.reset(enrich=[ok({"downloads": [], "rejected": 0})], transfer=[ok({})])
    starter = DurableStarter(host.durable_client())
    assert await starter.start_once(EVENT_ORCHESTRATOR, "xact-e-1", EVENT)
    assert not await starter.start_once(EVENT_ORCHESTRATOR, "xact-e-1", EVENT)  # pending
    await host.run_until_idle()
    assert not await starter.start_once(EVENT_ORCHESTRATOR, "xact-e-1", EVENT)  # completed
    assert not await starter.start_once(EVENT_ORCHESTRATOR, "xact-e-1", EVENT, rerun_finished=False)
    assert await starter.start_once(EVENT_ORCHESTRATOR, "xact-e-1", EVENT, rerun_finished=True)
    status = await host.get_status("xact-e-1")
    assert status is not None and status.runtime_status == "Pending"
    await host.run_until_idle()
    status = await host.get_status("xact-e-1")
    assert status is not None and status.runtime_status == "Completed"
