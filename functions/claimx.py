"""ClaimX triggers: Event Hub ingest, the Eventhouse poller timer, the two orchestrators and their
activities (adapters only)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.claimx import activities
from shared.claimx.ingest import INGEST_STAGE, ClaimXIngestor, Message
from shared.claimx.orchestration import (
    DEAD_LETTER_IN_BLOB_ACTIVITY,
    DOWNLOAD_ACTIVITY,
    ENRICH_ACTIVITY,
    EVENT_ORCHESTRATOR,
    MEDIA_ORCHESTRATOR,
    RECORD_EVENT_FAILURE_ACTIVITY,
    RECORD_MEDIA_FAILURE_ACTIVITY,
    event_orchestrator,
    media_orchestrator,
)
from shared.domains import Domain
from shared.durable import DurableStarter
from shared.errors import redacted_errors
from shared.runtime import get_runtime
from shared.telemetry import activity_log_context, log_context, observed_orchestration

log = logging.getLogger(__name__)
bp = df.Blueprint()


def _ingestor(client: df.DurableOrchestrationClient) -> ClaimXIngestor:
    runtime = get_runtime()
    return ClaimXIngestor(
        latch=runtime.dedup,
        staging=runtime.staging,
        dead_letters=runtime.dead_letters,
        failures=runtime.ingest_failures,
        starter=DurableStarter(client),
        retry_delays=runtime.settings.retry_delays_seconds,
        pool=runtime.pool,
    )


def _enqueued(event: func.EventHubEvent) -> datetime:
    value = event.enqueued_time
    if value is None:  # the hub always sets it; a missing one would make the id unstable
        raise ValueError("Event Hub message without an enqueued time")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@bp.function_name("claimx_ingest")
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:05",
    maximum_interval="00:15:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    connection="EventHubConnection",
    event_hub_name="%CLAIMX_EVENTHUB_NAME%",
    consumer_group="%CLAIMX_EVENTHUB_CONSUMER_GROUP%",
    cardinality="many",
)
@bp.durable_client_input(client_name="client")
async def claimx_ingest(events: list[func.EventHubEvent], client: df.DurableOrchestrationClient) -> None:
    # the host records a failed batch's error text (the state tables opened at first use, too): redacted
    with log_context(domain=Domain.CLAIMX, stage=INGEST_STAGE), redacted_errors():
        messages = [Message(event.get_body(), _enqueued(event)) for event in events]
        report = await _ingestor(client).ingest(messages)
    log.info(
        "claimx batch ingested",
        extra={
            "stage": "claimx_ingest",
            "received": report.received,
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "skipped": report.skipped,
            "invalid": report.invalid,
        },
    )


@bp.timer_trigger(arg_name="timer", schedule="%CLAIMX_POLL_SCHEDULE%", run_on_startup=False, use_monitor=True)
@bp.durable_client_input(client_name="client")
async def claimx_poll(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    runtime = get_runtime()
    if not runtime.settings.claimx_poller_enabled:
        return
    with log_context(domain=Domain.CLAIMX, stage="claimx_poll"), redacted_errors():
        poller = runtime.claimx.poller(
            runtime.storage, hand_on=_ingestor(client).ingest, run=runtime.pool.run
        )
        report = await poller.poll()
    log.info(
        "claimx eventhouse polled",
        extra={"stage": "claimx_poll", "batches": report.batches, "handed_on": report.handed_on},
    )


@bp.orchestration_trigger(context_name="context")
def claimx_event_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    body = event_orchestrator(context)
    return (yield from observed_orchestration(context, Domain.CLAIMX, EVENT_ORCHESTRATOR, body))


@bp.orchestration_trigger(context_name="context")
def claimx_media_orchestrator(context: df.DurableOrchestrationContext) -> Any:
    body = media_orchestrator(context)
    return (yield from observed_orchestration(context, Domain.CLAIMX, MEDIA_ORCHESTRATOR, body))


@bp.activity_trigger(input_name="event")
async def claimx_enrich(event: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.CLAIMX, ENRICH_ACTIVITY, event), redacted_errors():
        return await activities.enrich(event, get_runtime())


@bp.activity_trigger(input_name="task")
async def claimx_download(task: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.CLAIMX, DOWNLOAD_ACTIVITY, task), redacted_errors():
        return await activities.download(task, get_runtime())


@bp.activity_trigger(input_name="payload")
def claimx_record_media_failure(payload: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.CLAIMX, RECORD_MEDIA_FAILURE_ACTIVITY, payload), redacted_errors():
        return activities.record_media_failure(payload, get_runtime())


@bp.activity_trigger(input_name="payload")
def claimx_record_event_failure(payload: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.CLAIMX, RECORD_EVENT_FAILURE_ACTIVITY, payload), redacted_errors():
        return activities.record_event_failure(payload, get_runtime())


@bp.activity_trigger(input_name="payload")
def claimx_dead_letter_in_blob(payload: dict[str, Any]) -> dict[str, Any]:
    with activity_log_context(Domain.CLAIMX, DEAD_LETTER_IN_BLOB_ACTIVITY, payload), redacted_errors():
        return activities.dead_letter_in_blob(payload, get_runtime())
