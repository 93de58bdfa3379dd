"""XACT ingest: one Event Hub batch → event rows staged, one orchestration per new event
(docs/architecture.md, sections 2 and 3).

Every body ends counted as exactly one of accepted, duplicate, skipped or invalid (``received`` is
their sum). Containment: whatever belongs to one body (parsing, validation, dates, depth, sizes,
the encoding of its row for staging) makes that body invalid, dead-lettered with its raw text;
the others go on. Only storage failing fails the batch: the latches this delivery took are
released and the error propagates, so the Event Hubs retry policy (unlimited, for outages)
delivers the batch again.

A batch that keeps failing for a reason that is not an outage holds a poison body we did not
foresee. Each failure is counted per body in the state account (:class:`PoisonGuard`); once a
body has failed three times the batch is split in halves until the bodies that fail alone are
found: they are dead-lettered with reason ``poison`` and the rest go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from typing import Any

from shared import clock
from shared.bodies import InvalidBody, decode_body
from shared.domains import Domain
from shared.durable import OrchestrationStarter
from shared.errors import ErrorCategory, classify_exception
from shared.ids import event_id as derive_event_id
from shared.ids import xact_instance_id
from shared.lake.staging import Origin, StagingTable, UnstageableRow
from shared.pool import IoPool
from shared.state.deadletter import DeadLetter, DeadLetterReason, DeadLetterStore, raw_body_id
from shared.state.dedup import COMMIT_DELAY, Claim, DedupLatch
from shared.state.failures import POISON_AFTER, FailureLedger, IngestReport, PoisonGuard, failure_summary
from shared.xact.events import MAX_BODY_BYTES, XactEvent, parse_xact_body
from shared.xact.orchestration import EVENT_ORCHESTRATOR
from shared.xact.rows import event_row
from shared.xact.tables import XACT_EVENTS

log = logging.getLogger(__name__)

INGEST_STAGE = "xact_ingest"


def orchestration_input(
    event: XactEvent,
    retry_delays: Sequence[int],
    origin: Origin | None = None,
    *,
    event_date: date | None = None,
) -> dict[str, Any]:
    """The event orchestration's input: small, JSON-only, everything replay needs. It keeps the
    full attachment URLs (the transfer needs their signatures), so it lives in the state account
    only; ``event_date`` is the partition fixed when the event was first seen (default: its own)."""
    return {
        "origin": origin.to_dict() if origin else None,
        "trace_id": event.trace_id,
        "event_id": event.event_id,
        "status_subtype": event.status_subtype,
        "assignment_id": event.assignment_id,
        "estimate_version": event.estimate_version,
        "attachments": list(event.attachments),
        "event_date": (event_date or event.event_date).isoformat(),
        "occurred_at": event.occurred_at.isoformat(),
        "retry_delays": list(retry_delays),
    }


@dataclass(slots=True)
class _Prepared:
    """A valid event whose row is encoded and checked, waiting for its latch."""

    event: XactEvent
    entity: dict[str, Any]


@dataclass(slots=True)
class XactIngestor:
    latch: DedupLatch
    staging: StagingTable
    dead_letters: DeadLetterStore
    failures: FailureLedger
    starter: OrchestrationStarter
    retry_delays: Sequence[int]
    now: Callable[[], datetime]
    pool: IoPool
    sleep: Callable[[float], Awaitable[None]] = clock.sleep

    async def ingest(
        self, bodies: Sequence[bytes | str], *, enqueued_at: datetime | None = None
    ) -> IngestReport:
        """Process one delivered batch; raises only when storage fails (or a poison body cannot
        be isolated from the rest: then nothing is lost, the batch is delivered again).
        ``enqueued_at``: the batch's earliest Event Hub enqueue time (freshness is measured from
        it, so a row is never reported fresher than it is)."""
        origin = Origin(enqueued_at or self.now(), time.time())
        guard: PoisonGuard[bytes | str, IngestReport] = PoisonGuard(
            self.failures, self.pool, body_of=lambda b: b
        )
        parts, poison = await guard.run(bodies, partial(self._ingest, origin=origin))
        report = IngestReport()
        for part in parts:
            report.add(part)
        if poison:
            await self._dead_letter_poison(poison)
            report.add_poison(len(poison), Domain.XACT)
        # Done marks of earlier deliveries that no claim carried out yet (quiet partitions). They
        # are an optimisation: the batch went through even if they cannot be written now.
        try:
            await self.pool.run(partial(self.latch.flush_commits, older_than=COMMIT_DELAY))
        except Exception as exc:
            log.warning(
                "dedup done marks stay queued: %s", failure_summary(exc), extra={"stage": INGEST_STAGE}
            )
        return report

    # -- one batch -----------------------------------------------------------------------------

    async def _ingest(self, bodies: Sequence[bytes | str], *, origin: Origin) -> IngestReport:
        report = IngestReport(received=len(bodies))
        prepared: list[_Prepared] = []
        invalid: list[InvalidBody] = []
        in_batch: set[str] = set()
        created_at = self.now()
        for body in bodies:
            parsed = parse_xact_body(body)
            if isinstance(parsed, InvalidBody):
                invalid.append(parsed)
            elif parsed.trace_id in in_batch or self.latch.seen_recently(parsed.trace_id):
                report.duplicates += 1
            else:
                in_batch.add(parsed.trace_id)
                ready = self._prepare(parsed, created_at)
                if isinstance(ready, InvalidBody):
                    invalid.append(ready)
                else:
                    prepared.append(ready)
        report.invalid = len(invalid)
        if invalid:
            letters = [self._letter(body, DeadLetterReason.INVALID, body.reason) for body in invalid]
            await self.pool.run(self.pool.map, self.dead_letters.record, letters)

        if prepared:
            await self._claim_and_process(prepared, report, created_at, origin)
        report.count_outcomes(Domain.XACT)
        return report

    def _prepare(self, event: XactEvent, created_at: datetime) -> _Prepared | InvalidBody:
        """Build and encode the event's row now, so a row no Table entity can hold makes the body
        invalid before any latch is taken or anything is written."""
        try:
            return _Prepared(event, self.staging.encode(XACT_EVENTS, event_row(event, created_at=created_at)))
        except UnstageableRow as exc:
            return InvalidBody(raw=event.raw, reason=f"cannot be staged: {exc}")
        except Exception as exc:  # containment: anything else this one event raises is its own
            return InvalidBody(raw=event.raw, reason=f"cannot be staged ({type(exc).__name__})")

    async def _claim_and_process(
        self, items: Sequence[_Prepared], report: IngestReport, created_at: datetime, origin: Origin
    ) -> None:
        """Claim every key (waiting out other deliveries' leases), stage and start what was claimed."""
        keys = [item.event.trace_id for item in items]
        dates = [item.event.event_date for item in items]
        skipped = {item.event.trace_id for item in items if item.event.skip_reason}

        async def started_already(trace_id: str) -> bool:
            if trace_id in skipped:  # no orchestration to look at: wait for the latch
                return False
            return await self.starter.exists(xact_instance_id(derive_event_id(trace_id)))

        results = await self.latch.claim_settled(keys, dates, sleep=self.sleep, settled=started_already)
        claimed = [(item, claim) for item, claim in zip(items, results, strict=True) if claim is not None]
        report.duplicates += len(items) - len(claimed)
        try:
            entities = [self._entity_for(item, claim, created_at) for item, claim in claimed]
            # one transaction for the batch's rows (insert-only rows may share a partition)
            stage = partial(self.staging.stage_entities, XACT_EVENTS, entities, together=True, origin=origin)
            await self.pool.run(stage)
            to_start = [(item.event, claim) for item, claim in claimed if not item.event.skip_reason]
            started = await asyncio.gather(
                *(
                    self.starter.start_once(
                        EVENT_ORCHESTRATOR,
                        xact_instance_id(event.event_id),
                        orchestration_input(event, self.retry_delays, origin, event_date=claim.first_date),
                        rerun_finished=claim.expired,
                    )
                    for event, claim in to_start
                )
            )
            # a started event's orchestration is the proof of its work; a skipped one needs a mark
            self.latch.remember([claim for item, claim in claimed if not item.event.skip_reason])
            await self.pool.run(
                self.latch.commit_many, [claim for item, claim in claimed if item.event.skip_reason]
            )
        except BaseException:
            await self._release([claim for _, claim in claimed])
            raise
        report.accepted += len(to_start)
        report.skipped += len(claimed) - len(to_start)
        report.started += [
            xact_instance_id(event.event_id) for (event, _), new in zip(to_start, started, strict=True) if new
        ]
        for event in (item.event for item, _ in claimed if item.event.skip_reason):
            log.info(
                "xact event skipped",
                extra={"trace_id": event.trace_id, "reason": event.skip_reason, "stage": INGEST_STAGE},
            )

    def _entity_for(self, item: _Prepared, claim: Claim, created_at: datetime) -> dict[str, Any]:
        """The prepared entity, unless the key was first seen on another date: then its row goes
        to that first partition, so a redelivery never makes a second row."""
        if claim.first_date == item.event.event_date:
            return item.entity
        row = event_row(item.event, created_at=created_at, event_date=claim.first_date)
        return self.staging.encode(XACT_EVENTS, row)

    async def _release(self, claims: Sequence[Claim]) -> None:
        outcomes = await asyncio.gather(
            *(self.pool.run(self.latch.release, claim) for claim in claims),
            return_exceptions=True,
        )
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        if failed:
            log.warning(
                "could not release %d dedup latches; they are reclaimed when their lease ends", failed
            )

    # -- poison --------------------------------------------------------------------------------

    async def _dead_letter_poison(self, poison: Sequence[tuple[bytes | str, BaseException]]) -> None:
        letters = [self._poison_letter(body, exc) for body, exc in poison]
        await self.pool.run(self.pool.map, self.dead_letters.record, letters)

    def _poison_letter(self, body: bytes | str, exc: BaseException) -> DeadLetter:
        decoded = decode_body(body, max_bytes=MAX_BODY_BYTES)
        raw = decoded.raw if isinstance(decoded, InvalidBody) else decoded
        return self._letter(
            InvalidBody(raw, ""),
            DeadLetterReason.POISON,
            f"its batch failed {POISON_AFTER} times and it fails alone: {failure_summary(exc)}",
            category=classify_exception(exc),
        )

    def _letter(
        self,
        body: InvalidBody,
        reason: DeadLetterReason,
        error: str,
        *,
        category: ErrorCategory = ErrorCategory.PERMANENT,
    ) -> DeadLetter:
        return DeadLetter(
            id=raw_body_id(INGEST_STAGE, body.raw),
            domain=Domain.XACT,
            stage=INGEST_STAGE,
            reason=reason,
            category=category.value,
            error=error,
            retry_count=0,
            payload=body.raw,
            created_at=self.now(),
        )
