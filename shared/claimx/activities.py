"""ClaimX activity bodies. Each is idempotent (deterministic keys and paths, merges by key) and
returns classified failures as data; an open circuit comes back with the moment it may close, so
the orchestration waits for it. Only unexpected exceptions raise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared import metrics
from shared.claimx.circuit import CircuitOpenError
from shared.claimx.media import download_media
from shared.claimx.tables import CLAIMX_ATTACHMENTS, CLAIMX_ATTACHMENTS_FAILED, CLAIMX_SPECS
from shared.clock import utc_now
from shared.domains import Domain
from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.lake.staging import UnstageableRow
from shared.lake.tables import Row
from shared.redact import redact_url, strip_query
from shared.retry import Outcome, failed, ok, refused_until
from shared.state.deadletter import DeadLetter, DeadLetterReason, keep_in_blob, record_step
from shared.state.replay import replay_generation
from shared.transfer.attachment import AttachmentStatus

if TYPE_CHECKING:
    from shared.claimx.services import ClaimXServices
    from shared.config import Settings
    from shared.lake.staging import StagingTable
    from shared.pool import IoPool
    from shared.state.deadletter import DeadLetterStore
    from shared.transfer.stores import AttachmentStore

log = logging.getLogger(__name__)


class ActivityServices(Protocol):
    """What the ClaimX activities use of the process's runtime (``shared.runtime.Runtime``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def staging(self) -> StagingTable: ...
    @property
    def dead_letters(self) -> DeadLetterStore: ...
    @property
    def pool(self) -> IoPool: ...
    @property
    def claimx(self) -> ClaimXServices: ...
    def attachment_store(self, uri: str | None = None) -> AttachmentStore: ...


ENRICH_STAGE = "claimx_enrich"
DOWNLOAD_STAGE = "claimx_download"


def _refused(exc: ClassifiedError) -> Outcome:
    if isinstance(exc, CircuitOpenError):
        metrics.add("claimx.circuit.refusals")
        return refused_until(exc.failure, exc.retry_at)
    return failed(exc.failure)


async def enrich(event: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """Handle one event: API calls, entity rows staged, download tasks returned."""
    services = runtime.claimx
    try:
        result = await services.handlers().enrich(event)
        for table, rows in result.rows.items():
            for row in rows:  # a row too big to stage is PERMANENT for the event, found before staging
                runtime.staging.encode(CLAIMX_SPECS[table], row)
    except UnstageableRow as exc:
        return failed(Failure.of(ErrorCategory.PERMANENT, f"an entity row cannot be staged: {exc}"))
    except ClassifiedError as exc:
        log.warning(
            "claimx enrichment failed",
            extra={
                "trace_id": event["trace_id"],
                "event_type": event["event_type"],
                "error_category": exc.failure.category.value,
                "retry_count": event.get("retry_count", 0),
            },
        )
        return _refused(exc)
    at = utc_now()
    rejected = [
        failed_row(task, Failure.from_dict(task["failure"]), AttachmentStatus.REJECTED, retry_count=0, at=at)
        for task in result.rejected
    ]
    await runtime.pool.run(_stage, runtime.staging, {**result.rows, CLAIMX_ATTACHMENTS_FAILED.name: rejected})
    if result.fetched_project is not None:
        services.projects.remember(result.fetched_project)
    if rejected:
        metrics.ATTACHMENTS.add(len(rejected), domain=Domain.CLAIMX, status=AttachmentStatus.REJECTED)
    for table, rows in result.rows.items():
        metrics.add(f"claimx.rows.{table}", len(rows))
    ingested_at = event["ingested_at"]
    downloads = [{**task, "ingested_at": ingested_at} for task in result.downloads]
    return ok({"downloads": downloads, "rejected": len(rejected)})


def _stage(staging: StagingTable, rows: Mapping[str, Sequence[Row]]) -> None:
    for table, table_rows in rows.items():
        if table_rows:
            staging.stage_many(CLAIMX_SPECS[table], table_rows)


async def download(task: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """Copy the media file into the store, then stage its ``claimx_attachments`` row. Both are
    idempotent, so a retry after a staging failure finds the file committed and stages again."""
    services = runtime.claimx
    try:
        done = await download_media(
            task,
            api=services.api(),
            session=services.download_session(),
            store=runtime.attachment_store(runtime.settings.claimx_attachments_uri),
            policy=services.url_policy,
            settings=runtime.settings,
        )
    except ClassifiedError as exc:
        log.warning(
            "claimx media download failed",
            extra={
                "media_id": task["media_id"],
                "trace_id": task["trace_id"],
                "error_category": exc.failure.category.value,
                "retry_count": task.get("retry_count", 0),
                "download_url": redact_url(task["url"]),
            },
        )
        return _refused(exc)
    result = done.result
    event_time = datetime.fromisoformat(task["ingested_at"])
    row = {
        "media_id": task["media_id"],
        "project_id": task["project_id"],
        "trace_id": task["trace_id"],
        "file_name": task["file_name"],
        "file_type": task["extension"].upper(),
        "blob_path": task["blob_path"],
        "bytes": result.bytes_written,
        "content_type": result.content_type,
        "sha256": result.sha256,
        "downloaded_at": utc_now(),
        "created_at": event_time,
        "updated_at": event_time,
    }
    try:
        await runtime.pool.run(runtime.staging.stage_many, CLAIMX_ATTACHMENTS, [row])
        if task.get("replay"):  # it had failed for good: its failed row now says it recovered
            recovered = {"media_id": task["media_id"], "status": AttachmentStatus.RECOVERED}
            await runtime.pool.run(runtime.staging.stage_many, CLAIMX_ATTACHMENTS_FAILED, [recovered])
    except Exception as exc:  # the file is safe; staging its row is retried by class
        return failed(Failure.from_exception(exc))
    metrics.ATTACHMENTS.add(domain=Domain.CLAIMX, status=AttachmentStatus.UPLOADED)
    metrics.ATTACHMENT_BYTES.add(result.bytes_written, domain=Domain.CLAIMX)
    return ok(
        {
            "bytes": result.bytes_written,
            "sha256": result.sha256,
            "already_present": result.already_present,
            "refreshed": done.refreshed,
            "resumed": done.resumed,
        }
    )


def record_media_failure(payload: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """A failed media file's row in ``claimx_attachments_failed`` and its dead letter."""
    record: dict[str, Any] = payload["record"]
    letter = dead_letter_of(record)
    status = AttachmentStatus.EXHAUSTED if record["exhausted"] else AttachmentStatus.FAILED_PERMANENT
    try:
        row = failed_row(
            record["task"],
            Failure.from_dict(record["failure"]),
            status,
            retry_count=int(record["retry_count"]),
            at=letter.created_at,
        )
        runtime.staging.stage_many(CLAIMX_ATTACHMENTS_FAILED, [row])
        runtime.dead_letters.record(letter, replay_generation=replay_generation(record))
    except Exception as exc:
        return failed(Failure.from_exception(exc))
    metrics.ATTACHMENTS.add(domain=Domain.CLAIMX, status=status)
    return ok(status)


def record_event_failure(payload: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """The enrichment failed for good: the whole event is dead-lettered for replay."""
    record = payload["record"]
    return record_step(
        runtime.dead_letters, dead_letter_of(record), replay_generation=replay_generation(record)
    )


def dead_letter_in_blob(payload: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """The record activity failed for good: keep its dead letter through the Blob service."""
    record: dict[str, Any] = payload["record"]
    return keep_in_blob(
        runtime.dead_letters, dead_letter_of(record), Failure.from_dict(record["unrecorded_because"])
    )


def dead_letter_of(record: dict[str, Any]) -> DeadLetter:
    """The dead letter of a failed media file (``kind`` media) or event (``kind`` event).
    Deterministic ids, so a replayed activity never doubles one."""
    failure = Failure.from_dict(record["failure"])
    if record["kind"] == "media":
        task: dict[str, Any] = record["task"]
        stage, key, payload, media = DOWNLOAD_STAGE, task["media_id"], task, task["media_id"]
        reason = DeadLetterReason.EXHAUSTED if record["exhausted"] else DeadLetterReason.PERMANENT
    else:
        payload = record["event"]
        stage, key, media = ENRICH_STAGE, payload["trace_id"], None
        reason = DeadLetterReason.EXHAUSTED if failure.category.is_retryable else DeadLetterReason.PERMANENT
    return DeadLetter(
        id=f"{stage}:{key}",
        domain=Domain.CLAIMX,
        stage=stage,
        reason=reason,
        category=failure.category.value,
        error=failure.message,
        retry_count=int(record["retry_count"]),
        payload=payload,
        trace_id=payload["trace_id"],
        media_id=media,
        instance_id=record.get("instance_id"),
        created_at=utc_now(),
    )


def failed_row(
    task: Mapping[str, Any], failure: Failure, status: str, *, retry_count: int, at: datetime
) -> Row:
    return {
        "media_id": task["media_id"],
        "trace_id": task["trace_id"],
        "project_id": task["project_id"],
        "attachment_url": strip_query(task["url"]),
        "status": status,
        "error_category": failure.category.value,
        "error_message": failure.message,
        "http_status": failure.http_status,
        "retry_count": retry_count,
        "failed_at": at,
        "created_at": at,
    }
