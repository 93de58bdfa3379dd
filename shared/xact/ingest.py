"""XACT ingest: one Event Hub batch → event rows staged, one orchestration per new event.

Every body ends counted as accepted, duplicate, skipped or invalid (``received`` is their sum).
If storage fails, the latches this delivery took are released and the error propagates so the
Event Hubs retry policy delivers the batch again; nothing is marked seen that was not started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared import metrics
from shared.domains import Domain
from shared.errors import ErrorCategory
from shared.ids import xact_instance_id
from shared.lake.staging import Origin, StagingTable
from shared.pool import IoPool
from shared.state.deadletter import DeadLetter, DeadLetterReason, DeadLetterStore, raw_body_id
from shared.state.dedup import Claim, DedupLatch
from shared.xact.events import InvalidBody, XactEvent, parse_xact_body
from shared.xact.orchestration import EVENT_ORCHESTRATOR
from shared.xact.rows import event_row
from shared.xact.tables import XACT_EVENTS

log = logging.getLogger(__name__)

INGEST_STAGE = "xact_ingest"


class OrchestrationStarter(Protocol):
    """Starts an orchestration unless an instance with that id exists; a finished one is run
    again only when ``rerun_finished`` (the event is new again after the dedup TTL)."""

    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool: ...


@dataclass(slots=True)
class IngestReport:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    skipped: int = 0
    invalid: int = 0
    started: list[str] = field(default_factory=list)


def orchestration_input(
    event: XactEvent, retry_delays: Sequence[int], origin: Origin | None = None
) -> dict[str, Any]:
    """The event orchestration's input: small, JSON-only, everything replay needs."""
    return {
        "origin": origin.to_dict() if origin else None,
        "trace_id": event.trace_id,
        "event_id": event.event_id,
        "status_subtype": event.status_subtype,
        "assignment_id": event.assignment_id,
        "estimate_version": event.estimate_version,
        "attachments": list(event.attachments),
        "event_date": event.event_date.isoformat(),
        "occurred_at": event.occurred_at.isoformat(),
        "retry_delays": list(retry_delays),
    }


@dataclass(slots=True)
class XactIngestor:
    latch: DedupLatch
    staging: StagingTable
    dead_letters: DeadLetterStore
    starter: OrchestrationStarter
    retry_delays: Sequence[int]
    now: Callable[[], datetime]
    pool: IoPool

    async def ingest(
        self, bodies: Sequence[bytes | str], *, enqueued_at: datetime | None = None
    ) -> IngestReport:
        """``enqueued_at``: the batch's earliest Event Hub enqueue time (freshness is measured from
        it, so a row is never reported fresher than it is)."""
        report = IngestReport(received=len(bodies))
        origin = Origin(enqueued_at or self.now(), time.time())
        candidates: list[XactEvent] = []
        skipped: list[XactEvent] = []
        invalid: list[InvalidBody] = []
        in_batch: set[str] = set()
        for body in bodies:
            parsed = parse_xact_body(body)
            if isinstance(parsed, InvalidBody):
                invalid.append(parsed)
            elif parsed.trace_id in in_batch or self.latch.seen_recently(parsed.trace_id):
                report.duplicates += 1
            else:
                in_batch.add(parsed.trace_id)
                (skipped if parsed.skip_reason else candidates).append(parsed)
        report.invalid = len(invalid)
        report.skipped = len(skipped)

        if invalid:
            letters = [self._invalid_letter(body) for body in invalid]
            await self.pool.run(self.pool.map, self.dead_letters.record, letters)

        claims = await self._claim_all(candidates)
        try:
            claimed = [(event, claim) for event, claim in zip(candidates, claims, strict=True) if claim]
            report.duplicates += len(candidates) - len(claimed)
            created_at = self.now()
            rows = [event_row(event, created_at=created_at) for event in skipped]
            rows += [event_row(event, created_at=created_at) for event, _ in claimed]
            if rows:
                await self.pool.run(lambda: self.staging.stage_many(XACT_EVENTS, rows, origin=origin))
            started = await asyncio.gather(
                *(
                    self.starter.start_once(
                        EVENT_ORCHESTRATOR,
                        xact_instance_id(event.event_id),
                        orchestration_input(event, self.retry_delays, origin),
                        rerun_finished=claim.expired,
                    )
                    for event, claim in claimed
                )
            )
            await self.pool.run(self.latch.commit_many, [claim for _, claim in claimed])
        except BaseException:
            await self._release([claim for claim in claims if claim])
            raise
        report.accepted = len(claimed)
        report.started = [
            xact_instance_id(event.event_id) for (event, _), new in zip(claimed, started, strict=True) if new
        ]
        domain = Domain.XACT.value
        for outcome, count in (
            ("accepted", report.accepted),
            ("duplicate", report.duplicates),
            ("skipped", report.skipped),
            ("invalid", report.invalid),
        ):
            metrics.EVENTS.add(count, domain=domain, outcome=outcome)
        metrics.DEDUP_HITS.add(report.duplicates, domain=domain)
        for event in skipped:
            log.info(
                "xact event skipped",
                extra={"trace_id": event.trace_id, "reason": event.skip_reason, "stage": INGEST_STAGE},
            )
        return report

    async def _claim_all(self, events: Sequence[XactEvent]) -> list[Claim | None]:
        """Claim every key, all or nothing (the latch gives back what it took if a call fails)."""
        keys = [event.trace_id for event in events]
        return await self.pool.run(self.latch.claim_many, keys)

    async def _release(self, claims: Sequence[Claim]) -> None:
        outcomes = await asyncio.gather(
            *(self.pool.run(self.latch.release, claim) for claim in claims),
            return_exceptions=True,
        )
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        if failed:
            log.warning("could not release %d dedup latches; they stay pending and are reclaimed", failed)

    def _invalid_letter(self, body: InvalidBody) -> DeadLetter:
        return DeadLetter(
            id=raw_body_id(INGEST_STAGE, body.raw),
            domain=Domain.XACT,
            stage=INGEST_STAGE,
            reason=DeadLetterReason.INVALID,
            category=ErrorCategory.PERMANENT.value,
            error=body.reason,
            retry_count=0,
            payload=body.raw,
            created_at=self.now(),
        )
