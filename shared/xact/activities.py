"""XACT activity bodies. Each is idempotent (deterministic ids and paths, merges by key) and
returns classified failures as data; only unexpected exceptions raise.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared import metrics
from shared.clock import utc_now
from shared.domains import Domain
from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.ids import media_id
from shared.lake.staging import Origin
from shared.plugins.context import PluginContext, Stage
from shared.redact import public_url, redact_url
from shared.retry import Outcome, failed, ok
from shared.state.deadletter import DeadLetter, DeadLetterReason, keep_in_blob, record_step
from shared.state.replay import replay_generation
from shared.transfer.attachment import AttachmentStatus, TransferRequest, transfer_attachment
from shared.transfer.filetypes import require_allowed_extension
from shared.xact.paths import AttachmentTarget, UnsafeName, attachment_target, attachment_targets
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED

if TYPE_CHECKING:
    import aiohttp

    from shared.config import Settings
    from shared.lake.staging import StagingTable
    from shared.plugins.registry import PluginRegistry
    from shared.pool import IoPool
    from shared.state.deadletter import DeadLetterStore
    from shared.state.dedup import DedupLatch
    from shared.transfer.stores import AttachmentStore
    from shared.transfer.urls import UrlPolicy

log = logging.getLogger(__name__)


class ActivityServices(Protocol):
    """What the XACT activities use of the process's runtime (``shared.runtime.Runtime``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def staging(self) -> StagingTable: ...
    @property
    def dead_letters(self) -> DeadLetterStore: ...
    @property
    def url_policy(self) -> UrlPolicy: ...
    @property
    def plugins(self) -> PluginRegistry: ...
    def http_session(self) -> aiohttp.ClientSession: ...
    def attachment_store(self) -> AttachmentStore: ...
    @property
    def pool(self) -> IoPool: ...
    @property
    def dedup(self) -> DedupLatch: ...


TRANSFER_STAGE = "xact_transfer"
ENRICH_STAGE = "xact_enrich"


def enrich(event: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """Plugins, then one download task per distinct valid attachment URL, each with a safe path
    of its own; a URL that is refused (policy, extension, malformed) or has no safe path gets a
    ``rejected`` row in ``xact_attachments_failed`` and no download, and the event's other
    attachments go on (docs/architecture.md, sections 6 and 7)."""
    run = runtime.plugins.run(
        PluginContext(
            domain=Domain.XACT,
            stage=Stage.ENRICHMENT_COMPLETE,
            event_id=event["trace_id"],
            event_type=event["status_subtype"],
            data={
                "trace_id": event["trace_id"],
                "status_subtype": event["status_subtype"],
                "assignment_id": event["assignment_id"],
                "estimate_version": event["estimate_version"],
                "attachment_count": len(event["attachments"]),
            },
        )
    )
    _mark_latch_done(event["trace_id"], runtime)
    if run.terminated:
        log.info("plugins ended the pipeline for this event", extra={"trace_id": event["trace_id"]})
        return ok({"downloads": [], "rejected": 0, "terminated": True, "reason": run.reason})
    now = utc_now()
    accepted: list[tuple[str, str]] = []  # (media id, url) of the distinct URLs that may be fetched
    rejected: list[dict[str, Any]] = []
    seen: set[str] = set()
    for url in event["attachments"]:
        media = media_id(event["trace_id"], url)
        if media in seen:
            continue
        seen.add(media)
        try:
            runtime.url_policy.check(url)
            require_allowed_extension(url)
        except ClassifiedError as exc:
            rejected.append(_rejected_row(event, media, url, exc.failure, now))
            continue
        except Exception as exc:  # containment: a URL nobody foresaw rejects itself, not its event
            failure = Failure.of(ErrorCategory.PERMANENT, f"URL cannot be checked ({type(exc).__name__})")
            rejected.append(_rejected_row(event, media, url, failure, now))
            continue
        accepted.append((media, url))
    targets = attachment_targets(
        status_subtype=event["status_subtype"],
        assignment_id=event["assignment_id"],
        trace_id=event["trace_id"],
        estimate_version=event["estimate_version"],
        attachments=accepted,
    )
    downloads: list[dict[str, Any]] = []
    for media, url in accepted:
        target = targets[media]
        if isinstance(target, UnsafeName):
            failure = Failure.of(ErrorCategory.PERMANENT, f"no safe file path: {target}")
            rejected.append(_rejected_row(event, media, url, failure, now))
        else:
            downloads.append(_task(event, media, url, target))
    if rejected:
        origin = Origin.from_dict(event.get("origin"))
        runtime.staging.stage_many(XACT_ATTACHMENTS_FAILED, rejected, origin=origin)
        metrics.ATTACHMENTS.add(len(rejected), domain=Domain.XACT, status=AttachmentStatus.REJECTED)
    return ok({"downloads": downloads, "rejected": len(rejected), "terminated": False})


def _mark_latch_done(trace_id: str, runtime: ActivityServices) -> None:
    """The event's orchestration runs: ingest's part is done, and its latch says so (best effort:
    deliveries rely on the orchestration, the mark is for people reading the latch)."""
    try:
        runtime.dedup.mark_done(trace_id)
    except Exception as exc:
        log.warning("dedup latch not marked done: %s", type(exc).__name__, extra={"trace_id": trace_id})


def download_task(event: dict[str, Any], url: str) -> dict[str, Any]:
    """The download task of one attachment URL alone (raises :class:`UnsafeName`); an event's
    tasks come from :func:`enrich`, where paths shared by several attachments are told apart."""
    media = media_id(event["trace_id"], url)
    target = attachment_target(
        status_subtype=event["status_subtype"],
        assignment_id=event["assignment_id"],
        trace_id=event["trace_id"],
        estimate_version=event["estimate_version"],
        url=url,
    )
    return _task(event, media, url, target)


def _task(event: dict[str, Any], media: str, url: str, target: AttachmentTarget) -> dict[str, Any]:
    return {
        "trace_id": event["trace_id"],
        "media_id": media,
        "attachment_url": url,
        "blob_path": target.blob_path,
        "file_name": target.file_name,
        "file_type": target.file_type,
        "status_subtype": event["status_subtype"],
        "assignment_id": event["assignment_id"],
        "event_date": event["event_date"],
        "origin": event.get("origin"),
    }


def _rejected_row(
    event: dict[str, Any], media: str, url: str, failure: Failure, at: datetime
) -> dict[str, Any]:
    task = {"media_id": media, "trace_id": event["trace_id"], "attachment_url": url}
    return failed_row(task, failure, AttachmentStatus.REJECTED, retry_count=0, at=at)


async def transfer(task: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """Copy the attachment into the store, then stage its ``xact_attachments`` row. Both are
    idempotent, so a retry after a staging failure finds the file committed and stages again."""
    request = TransferRequest(url=task["attachment_url"], blob_path=task["blob_path"])
    started = time.perf_counter()
    try:
        result = await transfer_attachment(
            request,
            session=runtime.http_session(),
            store=runtime.attachment_store(),
            policy=runtime.url_policy,
            settings=runtime.settings,
            now=utc_now(),
        )
    except ClassifiedError as exc:
        log.warning(
            "attachment transfer failed",
            extra={
                "media_id": task["media_id"],
                "trace_id": task["trace_id"],
                "error_category": exc.failure.category.value,
                "retry_count": task.get("retry_count", 0),
                "download_url": redact_url(task["attachment_url"]),
            },
        )
        return failed(exc.failure)
    finally:
        metrics.TRANSFER_DURATION.record(time.perf_counter() - started, domain=Domain.XACT)
    now = utc_now()
    row = {
        "media_id": task["media_id"],
        "trace_id": task["trace_id"],
        "attachment_url": public_url(task["attachment_url"]),
        "blob_path": task["blob_path"],
        "file_type": task["file_type"],
        "status_subtype": task["status_subtype"],
        "assignment_id": task["assignment_id"],
        "bytes_downloaded": result.bytes_written,
        "content_type": result.content_type,
        "sha256": result.sha256,
        "downloaded_at": now,
        "event_date": date.fromisoformat(task["event_date"]),
        "created_at": now,
    }
    try:
        origin = Origin.from_dict(task.get("origin"))
        await runtime.pool.run(lambda: runtime.staging.stage_many(XACT_ATTACHMENTS, [row], origin=origin))
        if task.get("replay"):  # it had failed for good: its failed row now says it recovered
            recovered = {"media_id": task["media_id"], "status": AttachmentStatus.RECOVERED}
            await runtime.pool.run(runtime.staging.stage_many, XACT_ATTACHMENTS_FAILED, [recovered])
    except Exception as exc:  # the file is safe; staging its row is retried by class
        return failed(Failure.from_exception(exc))
    metrics.ATTACHMENTS.add(domain=Domain.XACT, status=AttachmentStatus.UPLOADED)
    metrics.ATTACHMENT_BYTES.add(result.bytes_written, domain=Domain.XACT)
    return ok(
        {
            "bytes": result.bytes_written,
            "content_type": result.content_type,
            "sha256": result.sha256,
            "resumed_from": result.resumed_from,
            "already_present": result.already_present,
        }
    )


def record_attachment_failure(payload: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """A failed attachment's row in ``xact_attachments_failed`` and its dead letter."""
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
        runtime.staging.stage_many(
            XACT_ATTACHMENTS_FAILED, [row], origin=Origin.from_dict(record["task"].get("origin"))
        )
        runtime.dead_letters.record(letter, replay_generation=replay_generation(record))
    except Exception as exc:
        return failed(Failure.from_exception(exc))
    metrics.ATTACHMENTS.add(domain=Domain.XACT, status=status)
    return ok(status.value)


def record_event_failure(payload: dict[str, Any], runtime: ActivityServices) -> Outcome:
    """The enrich step failed for good: the whole event is dead-lettered for replay."""
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
    """The dead letter of a failed attachment (``kind`` attachment) or event (``kind`` event).
    Deterministic ids, so a replayed activity never doubles one."""
    failure = Failure.from_dict(record["failure"])
    if record["kind"] == "attachment":
        task: dict[str, Any] = record["task"]
        stage, key, payload, media = TRANSFER_STAGE, task["media_id"], task, task["media_id"]
    else:
        payload = record["event"]
        stage, key, media = ENRICH_STAGE, payload["trace_id"], None
    return DeadLetter(
        id=f"{stage}:{key}",
        domain=Domain.XACT,
        stage=stage,
        reason=DeadLetterReason.EXHAUSTED if record["exhausted"] else DeadLetterReason.PERMANENT,
        category=failure.category.value,
        error=failure.message,
        retry_count=int(record["retry_count"]),
        payload=payload,
        trace_id=payload["trace_id"],
        media_id=media,
        instance_id=record.get("instance_id"),
    )


def failed_row(
    task: dict[str, Any], failure: Failure, status: AttachmentStatus, *, retry_count: int, at: datetime
) -> dict[str, Any]:
    return {
        "media_id": task["media_id"],
        "trace_id": task["trace_id"],
        "attachment_url": public_url(task["attachment_url"]),
        "status": status,
        "error_category": failure.category.value,
        "error_message": failure.message,
        "http_status": failure.http_status,
        "retry_count": retry_count,
        "failed_at": at,
        "created_at": at,
    }
