"""Dead-letter replay through the real app: an exhausted attachment replayed after its source
recovers, a replay that fails again reopening its record, an event replayed from its enrich dead
letter, and a raw body that is still not an event."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from claimsflow.claimx_samples import claimx_body, media_item, project_export
from claimsflow.simulator import expected_bytes
from shared.domains import Domain
from shared.durable import DurableStarter
from shared.ids import attachment_instance_id, event_id, media_id, xact_instance_id
from shared.ops import ReplayOutcome, replay_dead_letters
from shared.state.deadletter import DeadLetter, DeadLetterReason, DeadLetterStatus
from shared.xact.events import XactEvent, parse_xact_body
from shared.xact.ingest import orchestration_input
from tests.e2e.harness import Pipeline, s3_url, xact_body

pytestmark = pytest.mark.e2e

MakePipeline = Callable[..., Awaitable[Pipeline]]


async def replay(pipeline: Pipeline, *ids: str) -> list[tuple[ReplayOutcome, str | None]]:
    starter = DurableStarter(pipeline.host.durable_client())
    results = await replay_dead_letters(ids, runtime=pipeline.runtime, starter=starter)
    return [(r.outcome, r.instance_id) for r in results]


async def test_exhausted_attachment_replays_once_after_the_source_recovers(
    make_pipeline: MakePipeline,
) -> None:
    # five 503s: the first attempt and four retries fail, anything later is answered
    pipeline = await make_pipeline(
        {"faults": [{"path_contains": "flaky", "statuses": [503] * 5, "repeat": False}]}
    )
    trace_id = str(uuid.uuid4())
    url = s3_url("/exports/A1B2C3/flaky.pdf", size=3000)
    await pipeline.deliver([xact_body(trace_id, [url])])
    await pipeline.settle()
    [letter] = pipeline.dead_letters()
    assert (letter.reason, letter.retry_count, letter.status) == (DeadLetterReason.EXHAUSTED, 4, "open")
    original = attachment_instance_id(xact_instance_id(event_id(trace_id)), media_id(trace_id, url))
    assert letter.instance_id == original

    assert await replay(pipeline, letter.id) == [(ReplayOutcome.STARTED, f"{original}:replay1")]
    await pipeline.settle()
    status = await pipeline.host.get_status(f"{original}:replay1")
    assert status is not None and status.runtime_status == "Completed"
    [row] = pipeline.table("xact_attachments").to_dicts()
    assert row["media_id"] == letter.media_id
    # the failed row stays as the attachment's history, marked recovered: the run invariants hold
    failed = pipeline.table("xact_attachments_failed")
    assert failed.select("media_id", "status", "retry_count").rows() == [(letter.media_id, "recovered", 4)]
    files = pipeline.files()
    assert list(files.values()) == [expected_bytes("/exports/A1B2C3/flaky.pdf", 3000)]
    replayed = pipeline.runtime.dead_letters.get(letter.id)
    assert replayed is not None
    assert (replayed.status, replayed.replays, replayed.replay_instance_id) == (
        DeadLetterStatus.REPLAYED,
        1,
        f"{original}:replay1",
    )

    # replaying twice starts nothing new
    assert await replay(pipeline, letter.id) == [(ReplayOutcome.ALREADY_REPLAYED, f"{original}:replay1")]
    await pipeline.settle()
    assert await pipeline.host.get_status(f"{original}:replay2") is None
    assert len(pipeline.simulator.requests_for("flaky")) == 6


async def test_a_replay_that_fails_again_reopens_its_record(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline(
        {"faults": [{"path_contains": "down", "statuses": [503] * 10, "repeat": False}]}
    )
    trace_id = str(uuid.uuid4())
    await pipeline.deliver([xact_body(trace_id, [s3_url("/exports/A1B2C3/down.pdf")])])
    await pipeline.settle()
    [letter] = pipeline.dead_letters()
    [(outcome, first)] = await replay(pipeline, letter.id)
    assert outcome is ReplayOutcome.STARTED and first is not None and first.endswith(":replay1")
    await pipeline.settle()
    reopened = pipeline.runtime.dead_letters.get(letter.id)
    assert reopened is not None
    assert (reopened.status, reopened.replays, reopened.instance_id) == (DeadLetterStatus.OPEN, 1, first)
    assert len(pipeline.dead_letters()) == 1  # the same record, not a second one

    [(outcome, second)] = await replay(pipeline, letter.id)
    assert second == first.removesuffix(":replay1") + ":replay2"
    await pipeline.settle()
    assert pipeline.runtime.dead_letters.get(letter.id).status is DeadLetterStatus.REPLAYED  # type: ignore[union-attr]
    assert pipeline.table("xact_attachments").height == 1


async def test_an_event_replays_from_its_enrich_dead_letter(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline()
    trace_id = str(uuid.uuid4())
    parsed = parse_xact_body(xact_body(trace_id, [s3_url("/exports/A1B2C3/late.pdf", size=1234)]))
    assert isinstance(parsed, XactEvent)
    event = orchestration_input(parsed, [300, 600, 1200, 2400])
    instance = xact_instance_id(parsed.event_id)
    pipeline.runtime.dead_letters.record(
        DeadLetter(
            id=f"xact_enrich:{trace_id}",
            domain=Domain.XACT,
            stage="xact_enrich",
            reason=DeadLetterReason.EXHAUSTED,
            category="unknown",
            error="enrich kept failing",
            retry_count=4,
            payload=event,
            trace_id=trace_id,
            instance_id=instance,
        )
    )
    assert await replay(pipeline, f"xact_enrich:{trace_id}") == [
        (ReplayOutcome.STARTED, f"{instance}:replay1")
    ]
    await pipeline.settle()
    status = await pipeline.host.get_status(f"{instance}:replay1")
    assert status is not None and status.runtime_status == "Completed"
    assert pipeline.table("xact_attachments")["trace_id"].to_list() == [trace_id]


async def test_a_body_that_is_still_not_an_event_stays_open(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline()
    await pipeline.deliver(["{not an event"])
    await pipeline.settle()
    [letter] = pipeline.dead_letters()
    assert letter.stage == "xact_ingest"
    [(outcome, instance)] = await replay(pipeline, letter.id)
    assert (outcome, instance) == (ReplayOutcome.STILL_FAILING, None)
    assert pipeline.runtime.dead_letters.get(letter.id).status is DeadLetterStatus.OPEN  # type: ignore[union-attr]
    assert await replay(pipeline, "xact_transfer:no-such-record") == [(ReplayOutcome.NOT_FOUND, None)]


async def test_claimx_stages_replay_too(make_pipeline: MakePipeline) -> None:
    """An event whose project was unknown (enrich, permanent) and a media file whose link answered
    404 once (download, permanent) both come back once the cause is gone."""
    project, media_project = 5_900_001, 5_900_002
    world = {
        "claimx": {
            "projects": {str(media_project): project_export(media_project)},
            "media": {str(media_project): [media_item(91, size=2500)]},
        },
        "faults": [{"path_contains": "/media/91", "statuses": [404], "repeat": False}],
    }
    pipeline = await make_pipeline(world)
    await pipeline.deliver_claimx(
        [
            claimx_body("PROJECT_CREATED", project, "2026-11-23T08:30:00Z"),
            claimx_body("PROJECT_FILE_ADDED", media_project, "2026-11-23T08:31:00Z", mediaId=91),
        ]
    )
    await pipeline.settle()
    letters = {letter.stage: letter for letter in pipeline.dead_letters()}
    assert set(letters) == {"claimx_enrich", "claimx_download"}

    pipeline.simulator.world["claimx"]["projects"][str(project)] = project_export(project)  # fixed upstream
    results = await replay(pipeline, letters["claimx_enrich"].id, letters["claimx_download"].id)
    assert [outcome for outcome, _ in results] == [ReplayOutcome.STARTED, ReplayOutcome.STARTED]
    assert all(instance and instance.endswith(":replay1") for _, instance in results)
    await pipeline.settle()
    for _, instance in results:
        status = await pipeline.host.get_status(str(instance))
        assert status is not None and status.runtime_status == "Completed"
    assert str(project) in pipeline.table("claimx_projects")["project_id"].to_list()
    assert pipeline.table("claimx_attachments")["media_id"].to_list() == ["91"]
    assert pipeline.table("claimx_attachments_failed").select("media_id", "status").rows() == [
        ("91", "recovered")
    ]
    assert {d.status for d in pipeline.dead_letters()} == {DeadLetterStatus.REPLAYED}
