"""ClaimX orchestrators: generator functions, deterministic, registered by ``functions/``.

Event orchestrator: enrich (API calls, entity rows staged) → one media sub-orchestration per
download task. Media orchestrator: download (the file and its ``claimx_attachments`` row) with
retries by error class; a failure is recorded (failed row and dead letter). Calls that meet an
open circuit wait on a durable timer until it may close, without spending their retries. Failures
are recorded like XACT's: retried by class, then through the Blob fallback, and the instance
fails rather than the outcome being lost (``record_or_fail``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from shared.retry import call_with_retries, outcome_failure, record_or_fail, transfer_or_record

EVENT_ORCHESTRATOR = "claimx_event_orchestrator"
MEDIA_ORCHESTRATOR = "claimx_media_orchestrator"
ENRICH_ACTIVITY = "claimx_enrich"
DOWNLOAD_ACTIVITY = "claimx_download"
RECORD_MEDIA_FAILURE_ACTIVITY = "claimx_record_media_failure"
RECORD_EVENT_FAILURE_ACTIVITY = "claimx_record_event_failure"
DEAD_LETTER_IN_BLOB_ACTIVITY = "claimx_dead_letter_in_blob"
CIRCUIT_WAITS = 60  # per call: about an hour of one-minute waits before an open circuit costs a retry


def media_instance_id(parent_instance_id: str, media_id: str) -> str:
    return f"{parent_instance_id}:{media_id}"


def event_orchestrator(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    event: dict[str, Any] = context.get_input()
    delays: list[int] = event["retry_delays"]
    context.set_custom_status({"stage": "enrich", "trace_id": event["trace_id"]})
    outcome, retries = yield from call_with_retries(
        context, ENRICH_ACTIVITY, event, delays, circuit_waits=CIRCUIT_WAITS
    )
    failure = outcome_failure(outcome)
    if failure is not None:
        record = {
            "kind": "event",
            "event": event,
            "failure": failure.to_dict(),
            "retry_count": retries,
            "instance_id": context.instance_id,
            "replay": event.get("replay"),
        }
        context.set_custom_status({"stage": "record_failure", "trace_id": event["trace_id"]})
        yield from record_or_fail(
            context, RECORD_EVENT_FAILURE_ACTIVITY, DEAD_LETTER_IN_BLOB_ACTIVITY, record, delays
        )
        return {"trace_id": event["trace_id"], "status": "dead_lettered", "retry_count": retries, "media": []}
    downloads: list[dict[str, Any]] = outcome["value"]["downloads"]
    context.set_custom_status({"stage": "media", "trace_id": event["trace_id"], "count": len(downloads)})
    children = [
        context.call_sub_orchestrator(
            MEDIA_ORCHESTRATOR,
            {"task": task, "retry_delays": delays},
            media_instance_id(context.instance_id, task["media_id"]),
        )
        for task in downloads
    ]
    results: list[dict[str, Any]] = (yield context.task_all(children)) if children else []
    return {
        "trace_id": event["trace_id"],
        "status": "completed",
        "retry_count": retries,
        "rejected": outcome["value"]["rejected"],
        "media": results,
    }


def media_orchestrator(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    result = yield from transfer_or_record(
        context,
        kind="media",
        transfer=DOWNLOAD_ACTIVITY,
        record=RECORD_MEDIA_FAILURE_ACTIVITY,
        fallback=DEAD_LETTER_IN_BLOB_ACTIVITY,
        circuit_waits=CIRCUIT_WAITS,
    )
    return result
