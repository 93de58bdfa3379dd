"""Replay of ClaimX dead letters, one way back in per stage (docs/architecture.md, section 13):

* ``claimx_ingest`` (a body that was not a valid event): the raw body enters ingest again.
* ``claimx_enrich`` (an event whose enrichment failed for good): a new event orchestration.
* ``claimx_download`` (a media file that failed for good or ran out of retries): a new media
  orchestration from the original task.
"""

from __future__ import annotations

from typing import Protocol

from shared.claimx.activities import DOWNLOAD_STAGE, ENRICH_STAGE
from shared.claimx.ingest import INGEST_STAGE, ClaimXIngestor, Message, instance_id
from shared.claimx.orchestration import EVENT_ORCHESTRATOR, MEDIA_ORCHESTRATOR, media_instance_id
from shared.durable import OrchestrationStarter
from shared.lake.staging import StagingTable
from shared.pool import IoPool
from shared.state.deadletter import DeadLetterStore
from shared.state.dedup import DedupLatch
from shared.state.failures import FailureLedger
from shared.state.replay import ReplayRequest, ReplayStart, replayed_task, start_replay


class ReplayServices(Protocol):
    """What ClaimX replay uses of the runtime, besides the Durable starter."""

    @property
    def dedup(self) -> DedupLatch: ...
    @property
    def staging(self) -> StagingTable: ...
    @property
    def dead_letters(self) -> DeadLetterStore: ...
    @property
    def pool(self) -> IoPool: ...
    @property
    def ingest_failures(self) -> FailureLedger: ...


async def replay_download(
    request: ReplayRequest, services: ReplayServices, starter: OrchestrationStarter
) -> ReplayStart:
    task = replayed_task(request)
    original = request.letter.instance_id or media_instance_id(
        instance_id(task["trace_id"]), task["media_id"]
    )
    return await start_replay(request, starter, MEDIA_ORCHESTRATOR, original, {"task": task})


async def replay_enrich(
    request: ReplayRequest, services: ReplayServices, starter: OrchestrationStarter
) -> ReplayStart:
    event = replayed_task(request)
    original = request.letter.instance_id or instance_id(event["trace_id"])
    return await start_replay(request, starter, EVENT_ORCHESTRATOR, original, event)


async def replay_ingest(
    request: ReplayRequest, services: ReplayServices, starter: OrchestrationStarter
) -> ReplayStart:
    body = request.letter.payload if isinstance(request.letter.payload, str) else ""
    ingestor = ClaimXIngestor(
        latch=services.dedup,
        staging=services.staging,
        dead_letters=services.dead_letters,
        failures=services.ingest_failures,
        starter=starter,
        retry_delays=request.retry_delays,
        pool=services.pool,
    )
    report = await ingestor.ingest([Message(body, request.now)])
    if report.invalid:
        return ReplayStart(None, False, still_failing="the body is still not a valid event")
    return ReplayStart(report.started[0] if report.started else None, bool(report.started))


CLAIMX_REPLAY = {
    INGEST_STAGE: replay_ingest,
    ENRICH_STAGE: replay_enrich,
    DOWNLOAD_STAGE: replay_download,
}
