"""ClaimX orchestrators: generator functions, deterministic, registered by ``functions/``.

Event orchestrator: enrich (API calls, entity rows staged) → one media sub-orchestration per
download task. Media orchestrator: download with retries by error class → record the result.
Calls that meet an open circuit wait on a durable timer until it may close, without spending
their retries; the record steps retry by class too, and a record that still fails fails the
instance, so it shows in the failed-instance listing instead of vanishing.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from shared.retry import call_with_retries, outcome_failure

EVENT_ORCHESTRATOR = "claimx_event_orchestrator"
MEDIA_ORCHESTRATOR = "claimx_media_orchestrator"
ENRICH_ACTIVITY = "claimx_enrich"
DOWNLOAD_ACTIVITY = "claimx_download"
RECORD_MEDIA_ACTIVITY = "claimx_record_media"
RECORD_EVENT_FAILURE_ACTIVITY = "claimx_record_event_failure"
CIRCUIT_WAITS = 60  # per call: about an hour of one-minute waits before an open circuit costs a retry


class RecordingFailed(RuntimeError):
    """A record step failed after its retries; the instance fails with this error."""


def media_instance_id(parent_instance_id: str, media_id: str) -> str:
    return f"{parent_instance_id}:{media_id}"


def _record(
    context: Any, activity: str, payload: dict[str, Any], delays: list[int]
) -> Generator[Any, Any, Any]:
    """Run a record step with retries by class (its payload's ``retries`` are the work's, not its own)."""
    outcome, _ = yield from call_with_retries(context, activity, payload, delays)
    failure = outcome_failure(outcome)
    if failure is not None:
        raise RecordingFailed(
            f"{activity} failed after its retries: {failure.category.value}: {failure.message}"
        )
    return outcome["value"]


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
            "event": event,
            "failure": failure.to_dict(),
            "retries": retries,
            "instance_id": context.instance_id,
        }
        yield from _record(context, RECORD_EVENT_FAILURE_ACTIVITY, record, delays)
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
    payload: dict[str, Any] = context.get_input()
    task: dict[str, Any] = payload["task"]
    delays: list[int] = payload["retry_delays"]
    outcome, retries = yield from call_with_retries(
        context, DOWNLOAD_ACTIVITY, task, delays, circuit_waits=CIRCUIT_WAITS
    )
    failure = outcome_failure(outcome)
    record = {
        "task": task,
        "outcome": outcome,
        "retries": retries,
        "exhausted": failure is not None and failure.category.is_retryable,
        "instance_id": context.instance_id,
    }
    status = yield from _record(context, RECORD_MEDIA_ACTIVITY, record, delays)
    return {"media_id": task["media_id"], "status": status, "retry_count": retries}
