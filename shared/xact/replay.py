"""Replay of XACT dead letters: each stage that dead-letters has a way back in.

* ``xact_ingest`` (a body that was not a valid event): the raw body enters ingest again, so it is
  parsed, deduplicated and started exactly as if the Event Hub had delivered it.
* ``xact_enrich`` (an event whose enrich step failed for good): a new event orchestration.
* ``xact_transfer`` (an attachment that failed for good or ran out of retries): a new attachment
  orchestration from the original download task.

Orchestrations start with retry count 0 and a ``replay`` marker (dead-letter id and generation);
their instance id is the original's with ``:replay<generation>``, so starting the same replay twice
finds the instance and starts nothing (docs/architecture.md, section 5).
"""

from __future__ import annotations

from typing import Protocol

from shared.durable import OrchestrationStarter
from shared.ids import attachment_instance_id, event_id, xact_instance_id
from shared.lake.staging import StagingTable
from shared.pool import IoPool
from shared.state.deadletter import DeadLetterStore
from shared.state.dedup import DedupLatch
from shared.state.failures import FailureLedger
from shared.state.replay import ReplayRequest, ReplayStart, replayed_task, start_replay
from shared.xact.activities import ENRICH_STAGE, TRANSFER_STAGE
from shared.xact.ingest import INGEST_STAGE, XactIngestor
from shared.xact.orchestration import ATTACHMENT_ORCHESTRATOR, EVENT_ORCHESTRATOR


class ReplayServices(Protocol):
    """What XACT replay uses of the runtime, besides the Durable starter."""

    @property
    def dedup(self) -> DedupLatch: ...
    @property
    def staging(self) -> StagingTable: ...
    @property
    def dead_letters(self) -> DeadLetterStore: ...
    @property
    def ingest_failures(self) -> FailureLedger: ...
    @property
    def pool(self) -> IoPool: ...


async def replay_transfer(
    request: ReplayRequest, services: ReplayServices, starter: OrchestrationStarter
) -> ReplayStart:
    task = replayed_task(request)
    original = request.letter.instance_id or attachment_instance_id(
        xact_instance_id(event_id(task["trace_id"])), task["media_id"]
    )
    return await start_replay(request, starter, ATTACHMENT_ORCHESTRATOR, original, {"task": task})


async def replay_enrich(
    request: ReplayRequest, services: ReplayServices, starter: OrchestrationStarter
) -> ReplayStart:
    event = replayed_task(request)
    original = request.letter.instance_id or xact_instance_id(event["event_id"])
    return await start_replay(request, starter, EVENT_ORCHESTRATOR, original, event)


async def replay_ingest(
    request: ReplayRequest, services: ReplayServices, starter: OrchestrationStarter
) -> ReplayStart:
    body = request.letter.payload if isinstance(request.letter.payload, str) else ""
    ingestor = XactIngestor(
        latch=services.dedup,
        staging=services.staging,
        dead_letters=services.dead_letters,
        failures=services.ingest_failures,
        starter=starter,
        retry_delays=request.retry_delays,
        now=lambda: request.now,
        pool=services.pool,
    )
    report = await ingestor.ingest([body])
    if report.invalid:
        return ReplayStart(None, False, still_failing="the body is still not a valid event")
    instance_id = report.started[0] if report.started else None
    return ReplayStart(instance_id, bool(report.started))


XACT_REPLAY = {
    INGEST_STAGE: replay_ingest,
    ENRICH_STAGE: replay_enrich,
    TRANSFER_STAGE: replay_transfer,
}
