"""XACT orchestrators: generator functions, deterministic, registered by ``functions/``.

event orchestrator: enrich (plugins + download tasks) -> one attachment sub-orchestration per
attachment, fanned out. attachment orchestrator: transfer with retries by error class; a transfer
that succeeds stages its ``xact_attachments`` row in the same activity (two episodes and one
activity per uploaded file); a failure is recorded by its own activity (a failed row and a dead
letter), retried by class too, with the fallback of docs/architecture.md, section 5.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from shared.ids import attachment_instance_id
from shared.retry import call_with_retries, outcome_failure, record_or_fail, transfer_or_record

EVENT_ORCHESTRATOR = "xact_event_orchestrator"
ATTACHMENT_ORCHESTRATOR = "xact_attachment_orchestrator"
ENRICH_ACTIVITY = "xact_enrich"
TRANSFER_ACTIVITY = "xact_transfer"
RECORD_ATTACHMENT_FAILURE_ACTIVITY = "xact_record_attachment_failure"
RECORD_EVENT_FAILURE_ACTIVITY = "xact_record_event_failure"
DEAD_LETTER_IN_BLOB_ACTIVITY = "xact_dead_letter_in_blob"


def event_orchestrator(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    event: dict[str, Any] = context.get_input()
    delays: list[int] = event["retry_delays"]
    context.set_custom_status({"stage": "enrich", "trace_id": event["trace_id"]})
    outcome, retries = yield from call_with_retries(context, ENRICH_ACTIVITY, event, delays)
    failure = outcome_failure(outcome)
    if failure is not None:
        record = {
            "kind": "event",
            "event": event,
            "failure": failure.to_dict(),
            "retry_count": retries,
            "exhausted": failure.category.is_retryable,
            "instance_id": context.instance_id,
            "replay": event.get("replay"),
        }
        context.set_custom_status({"stage": "record_failure", "trace_id": event["trace_id"]})
        yield from record_or_fail(
            context, RECORD_EVENT_FAILURE_ACTIVITY, DEAD_LETTER_IN_BLOB_ACTIVITY, record, delays
        )
        return {"trace_id": event["trace_id"], "status": "dead_lettered", "attachments": []}
    downloads: list[dict[str, Any]] = outcome["value"]["downloads"]
    context.set_custom_status(
        {"stage": "attachments", "trace_id": event["trace_id"], "count": len(downloads)}
    )
    children = [
        context.call_sub_orchestrator(
            ATTACHMENT_ORCHESTRATOR,
            {"task": task, "retry_delays": delays},
            attachment_instance_id(context.instance_id, task["media_id"]),
        )
        for task in downloads
    ]
    results: list[dict[str, Any]] = (yield context.task_all(children)) if children else []
    return {
        "trace_id": event["trace_id"],
        "status": "terminated" if outcome["value"].get("terminated") else "completed",
        "rejected": outcome["value"].get("rejected", 0),
        "attachments": results,
    }


def attachment_orchestrator(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    result = yield from transfer_or_record(
        context,
        kind="attachment",
        transfer=TRANSFER_ACTIVITY,
        record=RECORD_ATTACHMENT_FAILURE_ACTIVITY,
        fallback=DEAD_LETTER_IN_BLOB_ACTIVITY,
    )
    return result
