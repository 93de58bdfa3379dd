"""XACT triggers: Event Hub ingest, the two orchestrators and their activities (adapters only)."""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.clock import utc_now
from shared.domains import Domain
from shared.durable import DurableStarter
from shared.errors import redacted_errors
from shared.runtime import get_runtime
from shared.telemetry import activity_log_context, log_context, observed_orchestration
from shared.xact import activities
from shared.xact.ingest import INGEST_STAGE, XactIngestor
from shared.xact.orchestration import (
    ATTACHMENT_ORCHESTRATOR,
    DEAD_LETTER_IN_BLOB_ACTIVITY,
    ENRICH_ACTIVITY,
    EVENT_ORCHESTRATOR,
    RECORD_ATTACHMENT_FAILURE_ACTIVITY,
    RECORD_EVENT_FAILURE_ACTIVITY,
    TRANSFER_ACTIVITY,
    attachment_orchestrator,
    event_orchestrator,
)

log = logging.getLogger(__name__)
bp = df.Blueprint()


@bp.function_name("xact_ingest")
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:05",
    maximum_interval="00:15:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    connection="EventHubConnection",
    event_hub_name="%XACT_EVENTHUB_NAME%",
    consumer_group="%XACT_EVENTHUB_CONSUMER_GROUP%",
    cardinality="many",
)
@bp.durable_client_input(client_name="client")
async def xact_ingest(events: list[func.EventHubEvent], client: df.DurableOrchestrationClient) -> None:
    enqueued = [event.enqueued_time for event in events if event.enqueued_time is not None]
    # the host records a failed batch's error text (the state tables opened at first use, too): redacted
    with log_context(domain=Domain.XACT, stage=INGEST_STAGE), redacted_errors():
        runtime = get_runtime()
        ingestor = XactIngestor(
            latch=runtime.dedup,
            staging=runtime.staging,
            dead_letters=runtime.dead_letters,
            failures=runtime.ingest_failures,
            starter=DurableStarter(client),
            retry_delays=runtime.settings.retry_delays_seconds,
            now=utc_now,
            pool=runtime.pool,
        )
        report = await ingestor.ingest(
            [event.get_body() for event in events], enqueued_at=min(enqueued, default=None)
        )
    log.info(
        "xact batch ingested",
        extra={
            "stage": "xact_ingest",
            "received": report.received,
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "skipped": report.skipped,
            "invalid": report.invalid,
        },
    )


@bp.orchestration_trigger(context_name="context")
def xact_event_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    body = event_orchestrator(context)
    return (yield from observed_orchestration(context, Domain.XACT, EVENT_ORCHESTRATOR, body))


@bp.orchestration_trigger(context_name="context")
def xact_attachment_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    body = attachment_orchestrator(context)
    return (yield from observed_orchestration(context, Domain.XACT, ATTACHMENT_ORCHESTRATOR, body))


@bp.activity_trigger(input_name="event")
def xact_enrich(event: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.XACT, ENRICH_ACTIVITY, event), redacted_errors():
        return activities.enrich(event, get_runtime())


@bp.activity_trigger(input_name="task")
async def xact_transfer(task: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.XACT, TRANSFER_ACTIVITY, task), redacted_errors():
        return await activities.transfer(task, get_runtime())


@bp.activity_trigger(input_name="payload")
def xact_record_attachment_failure(payload: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.XACT, RECORD_ATTACHMENT_FAILURE_ACTIVITY, payload), redacted_errors():
        return activities.record_attachment_failure(payload, get_runtime())


@bp.activity_trigger(input_name="payload")
def xact_record_event_failure(payload: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.XACT, RECORD_EVENT_FAILURE_ACTIVITY, payload), redacted_errors():
        return activities.record_event_failure(payload, get_runtime())


@bp.activity_trigger(input_name="payload")
def xact_dead_letter_in_blob(payload: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.XACT, DEAD_LETTER_IN_BLOB_ACTIVITY, payload), redacted_errors():
        return activities.dead_letter_in_blob(payload, get_runtime())
