"""Replay of ClaimX dead letters, one way back in per stage (docs/architecture.md, section 13):

* ``claimx_ingest`` (a body that was not a valid event): the raw body enters ingest again.
* ``claimx_enrich`` (an event whose enrichment failed for good): a new event orchestration.
* ``claimx_download`` (a media file that failed for good or ran out of retries): a new media
  orchestration from the original task.
"""

from __future__ import annotations

from typing import Any, Protocol

from shared.claimx.activities import DOWNLOAD_STAGE, ENRICH_STAGE
from shared.claimx.ingest import INGEST_STAGE, ClaimXIngestor, Message, Starter, instance_id
from shared.claimx.orchestration import EVENT_ORCHESTRATOR, MEDIA_ORCHESTRATOR, media_instance_id
from shared.lake.staging import StagingTable
from shared.pool import IoPool
from shared.state.deadletter import DeadLetterStore
from shared.state.dedup import DedupLatch
from shared.state.failures import FailureLedger
from shared.state.replay import ReplayRequest, ReplayStart, replay_instance_id, replay_marker


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


def _payload(request: ReplayRequest) -> dict[str, Any]:
    payload = request.letter.payload
    return dict(payload) if isinstance(payload, dict) else {}


async def replay_download(request: ReplayRequest, services: ReplayServices, starter: Starter) -> ReplayStart:
    task = _payload(request)
    task.pop("retry_count", None)
    original = request.letter.instance_id or media_instance_id(
        instance_id(task["trace_id"]), task["media_id"]
    )
    new_id = replay_instance_id(original, request.generation)
    payload = {"task": task, "retry_delays": list(request.retry_delays), "replay": replay_marker(request)}
    return ReplayStart(new_id, await starter.start_once(MEDIA_ORCHESTRATOR, new_id, payload))


async def replay_enrich(request: ReplayRequest, services: ReplayServices, starter: Starter) -> ReplayStart:
    event = _payload(request)
    event.pop("retry_count", None)
    original = request.letter.instance_id or instance_id(event["trace_id"])
    new_id = replay_instance_id(original, request.generation)
    payload = {**event, "retry_delays": list(request.retry_delays), "replay": replay_marker(request)}
    return ReplayStart(new_id, await starter.start_once(EVENT_ORCHESTRATOR, new_id, payload))


async def replay_ingest(request: ReplayRequest, services: ReplayServices, starter: Starter) -> ReplayStart:
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
