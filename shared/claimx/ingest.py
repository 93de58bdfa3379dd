"""ClaimX ingest: one Event Hub batch (or one poller batch) → ``claimx_events`` rows staged, one
orchestration per new event of a known type.

Every body ends counted accepted, duplicate, skipped (an unknown event type: its row is written,
nothing else happens) or invalid (a dead letter with the raw body). The dedup latch, staging, dead
letters and the poison isolation of a batch that keeps failing (:class:`PoisonGuard`) are the shared
ones; if storage fails, the latches this delivery took are released and the error propagates so the
batch is delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared import clock
from shared.bodies import InvalidBody, decode_body
from shared.claimx.events import MAX_BODY_BYTES, ClaimXEvent, parse_claimx_body
from shared.claimx.tables import CLAIMX_EVENTS
from shared.clock import utc_now
from shared.domains import Domain
from shared.durable import OrchestrationStarter
from shared.errors import ErrorCategory, classify_exception
from shared.lake.staging import StagingTable
from shared.pool import IoPool
from shared.state.deadletter import DeadLetter, DeadLetterReason, DeadLetterStore, raw_body_id
from shared.state.dedup import Claim, DedupLatch
from shared.state.failures import POISON_AFTER, FailureLedger, IngestReport, PoisonGuard, failure_summary

log = logging.getLogger(__name__)

INGEST_STAGE = "claimx_ingest"
EVENT_ORCHESTRATOR = "claimx_event_orchestrator"


@dataclass(frozen=True, slots=True)
class Message:
    """One Event Hub message: its body and the time the hub enqueued it."""

    body: bytes | str
    enqueued_at: datetime


def instance_id(trace_id: str) -> str:
    """Durable instance id of a ClaimX event orchestration: a redelivery cannot start a second one."""
    return f"claimx-{trace_id}"


def event_row(event: ClaimXEvent, *, created_at: datetime) -> dict[str, Any]:
    return {
        "trace_id": event.trace_id,
        "event_type": event.event_type,
        "project_id": event.project_id,
        "media_id": event.media_id,
        "task_assignment_id": event.task_assignment_id,
        "video_collaboration_id": event.video_collaboration_id,
        "master_file_name": event.master_file_name,
        "ingested_at": event.ingested_at,
        "created_at": created_at,
        "event_date": event.event_date,
    }


def orchestration_input(event: ClaimXEvent, retry_delays: Sequence[int]) -> dict[str, Any]:
    return {**event.to_dict(), "retry_delays": list(retry_delays)}


@dataclass(slots=True)
class ClaimXIngestor:
    latch: DedupLatch
    staging: StagingTable
    dead_letters: DeadLetterStore
    failures: FailureLedger
    starter: OrchestrationStarter
    retry_delays: Sequence[int]
    pool: IoPool
    sleep: Callable[[float], Awaitable[None]] = clock.sleep

    async def ingest(self, messages: Sequence[Message]) -> IngestReport:
        """Process one delivered batch; raises only when storage fails (or a poison body cannot be
        isolated from the rest: then nothing is lost, the batch is delivered again)."""
        guard: PoisonGuard[Message, IngestReport] = PoisonGuard(self.failures, self.pool, lambda m: m.body)
        parts, poison = await guard.run(messages, self._ingest)
        report = IngestReport()
        for part in parts:
            report.add(part)
        if poison:
            letters = [self._poison_letter(message, exc) for message, exc in poison]
            await self.pool.run(self.pool.map, self.dead_letters.record, letters)
            report.add_poison(len(poison), Domain.CLAIMX)
        return report

    async def _ingest(self, messages: Sequence[Message]) -> IngestReport:
        report = IngestReport(received=len(messages))
        candidates: list[ClaimXEvent] = []
        skipped: list[ClaimXEvent] = []
        invalid: list[InvalidBody] = []
        in_batch: set[str] = set()
        for message in messages:
            parsed = parse_claimx_body(message.body, enqueued_at=message.enqueued_at)
            if isinstance(parsed, InvalidBody):
                invalid.append(parsed)
            elif parsed.trace_id in in_batch or self.latch.seen_recently(parsed.trace_id):
                report.duplicates += 1
            else:
                in_batch.add(parsed.trace_id)
                (skipped if parsed.skip_reason else candidates).append(parsed)
        report.invalid, report.skipped = len(invalid), len(skipped)
        if invalid:
            letters = [self._letter(body) for body in invalid]
            await self.pool.run(self.pool.map, self.dead_letters.record, letters)

        claims = await self.latch.claim_settled(
            [e.trace_id for e in candidates],
            [e.event_date for e in candidates],
            sleep=self.sleep,
            settled=lambda trace: self.starter.exists(instance_id(trace)),
        )
        try:
            claimed = [(event, claim) for event, claim in zip(candidates, claims, strict=True) if claim]
            report.duplicates += len(candidates) - len(claimed)
            created_at = utc_now()
            rows = [event_row(event, created_at=created_at) for event in skipped]
            rows += [  # the partition fixed when the event was first seen
                {**event_row(event, created_at=created_at), "event_date": claim.first_date}
                for event, claim in claimed
            ]
            if rows:
                await self.pool.run(self.staging.stage_many, CLAIMX_EVENTS, rows)
            started = await asyncio.gather(*(self._start(event, claim) for event, claim in claimed))
            await self.pool.run(self.latch.commit_many, [claim for _, claim in claimed])
        except BaseException:
            await self._release([claim for claim in claims if claim])
            raise
        report.accepted = len(claimed)
        report.started = [
            instance_id(event.trace_id) for (event, _), new in zip(claimed, started, strict=True) if new
        ]
        report.count_outcomes(Domain.CLAIMX)
        for event in skipped:
            log.info(
                "claimx event skipped",
                extra={"trace_id": event.trace_id, "reason": event.skip_reason, "stage": INGEST_STAGE},
            )
        return report

    async def _start(self, event: ClaimXEvent, claim: Claim) -> bool:
        return await self.starter.start_once(
            EVENT_ORCHESTRATOR,
            instance_id(event.trace_id),
            orchestration_input(event, self.retry_delays),
            rerun_finished=claim.expired,
        )

    async def _release(self, claims: Sequence[Claim]) -> None:
        outcomes = await asyncio.gather(
            *(self.pool.run(self.latch.release, claim) for claim in claims), return_exceptions=True
        )
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        if failed:
            log.warning("could not release %d dedup latches; they stay pending and are reclaimed", failed)

    def _poison_letter(self, message: Message, exc: BaseException) -> DeadLetter:
        decoded = decode_body(message.body, max_bytes=MAX_BODY_BYTES)
        raw = decoded.raw if isinstance(decoded, InvalidBody) else decoded
        letter = self._letter(
            InvalidBody(
                raw, f"its batch failed {POISON_AFTER} times and it fails alone: {failure_summary(exc)}"
            )
        )
        return replace(letter, reason=DeadLetterReason.POISON, category=classify_exception(exc).value)

    def _letter(self, body: InvalidBody) -> DeadLetter:
        return DeadLetter(
            id=raw_body_id(INGEST_STAGE, body.raw),
            domain=Domain.CLAIMX,
            stage=INGEST_STAGE,
            reason=DeadLetterReason.INVALID,
            category=ErrorCategory.PERMANENT.value,
            error=body.reason,
            retry_count=0,
            payload=body.raw,
            created_at=utc_now(),
        )
