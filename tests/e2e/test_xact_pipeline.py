"""The XACT pipeline end to end: ``function_app.app`` on the local host, real Azurite, the real
Durable SDK replay, attachments served by the simulator, Delta tables read back with polars."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from claimsflow.azurite import Azurite, free_port
from claimsflow.simulator import expected_bytes
from local_host import EventType
from shared.config import Settings
from shared.durable import purge_finished_instances
from shared.ids import attachment_instance_id, event_id, media_id, xact_instance_id
from shared.runtime import Runtime
from shared.state.dedup import DedupLatch
from shared.xact.orchestration import EVENT_ORCHESTRATOR
from tests.e2e.harness import START, Pipeline, s3_url, xact_body

pytestmark = pytest.mark.e2e

MakePipeline = Callable[..., Awaitable[Pipeline]]
ORCHESTRATION_START = EventType.OrchestratorStarted
TIMER_CREATED = EventType.TimerCreated
TASK_SCHEDULED = EventType.TaskScheduled


def trace() -> str:
    return str(uuid.uuid4())


def attachment_instance(trace_id: str, url: str) -> str:
    return attachment_instance_id(xact_instance_id(event_id(trace_id)), media_id(trace_id, url))


def path_and_size(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    size = next((int(p.split("=", 1)[1]) for p in parts.query.split("&") if p.startswith("size=")), 4096)
    return parts.path, size


def timer_delays(history: list[dict[str, Any]]) -> list[timedelta]:
    """For each TimerCreated: FireAt minus the orchestrator time that created it."""
    delays = []
    now: datetime | None = None
    for event in history:
        if event["EventType"] == ORCHESTRATION_START:
            now = datetime.fromisoformat(event["Timestamp"])
        elif event["EventType"] == TIMER_CREATED:
            assert now is not None
            delays.append(datetime.fromisoformat(event["FireAt"]) - now)
    return delays


def scheduled(history: list[dict[str, Any]], name: str) -> int:
    return sum(1 for e in history if e["EventType"] == TASK_SCHEDULED and e.get("Name") == name)


class FailingAfterStartLatch(DedupLatch):
    """Storage fails after the orchestrations started but before the latches were marked done."""

    failed = False

    def commit_many(self, claims: Any) -> None:
        if not FailingAfterStartLatch.failed:
            FailingAfterStartLatch.failed = True
            raise ConnectionResetError("storage failed after starting orchestrations")
        super().commit_many(claims)


async def test_batch_failing_then_delivered_again_after_a_restart_is_exactly_once(
    make_pipeline: MakePipeline,
) -> None:
    pipeline = await make_pipeline()
    FailingAfterStartLatch.failed = False
    pipeline.runtime.dedup.__class__ = FailingAfterStartLatch
    events: dict[str, list[str]] = {}
    for n in range(12):
        trace_id = trace()
        events[trace_id] = [
            s3_url(f"/exports/A1B2C3/e{n}/photo.jpg", size=3000 + n),
            s3_url(f"/exports/A1B2C3/e{n}/estimate.pdf", size=2_500_000 + n),
        ]
    bodies = [xact_body(t, urls) for t, urls in events.items()]
    bodies.append(bodies[0])  # a duplicate inside the batch
    # the first delivery fails mid-batch; the Event Hubs retry policy delivers it again
    await pipeline.deliver(bodies)
    assert FailingAfterStartLatch.failed
    await pipeline.host.run_until_idle()
    # a restart (memory gone), then the batch arrives once more (the checkpoint was never written)
    await pipeline.restart()
    await pipeline.deliver(bodies)
    await pipeline.settle()

    xact_events = pipeline.table("xact_events")
    assert xact_events.height == len(events)
    assert sorted(xact_events["trace_id"].to_list()) == sorted(events)
    attachments = pipeline.table("xact_attachments")
    expected_media = {media_id(t, url) for t, urls in events.items() for url in urls}
    assert attachments.height == len(expected_media)
    assert set(attachments["media_id"].to_list()) == expected_media
    files = pipeline.files()
    assert sorted(files) == sorted(attachments["blob_path"].to_list())
    for trace_id, urls in events.items():
        for url in urls:
            row = attachments.filter(attachments["media_id"] == media_id(trace_id, url)).row(0, named=True)
            path, size = path_and_size(url)
            assert files[row["blob_path"]] == expected_bytes(path, size)
            assert row["bytes_downloaded"] == size
    assert pipeline.dead_letters() == []


async def test_source_failing_twice_then_succeeding(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline({"faults": [{"path_contains": "flaky", "statuses": [503, 503]}]})
    trace_id, url = trace(), s3_url("/exports/A1B2C3/flaky.pdf", size=10_000)
    await pipeline.deliver([xact_body(trace_id, [url])])
    await pipeline.settle()

    history = await pipeline.history(attachment_instance(trace_id, url))
    assert scheduled(history, "xact_transfer") == 3
    assert timer_delays(history) == [timedelta(minutes=5), timedelta(minutes=10)]
    attachments = pipeline.table("xact_attachments")
    assert attachments["media_id"].to_list() == [media_id(trace_id, url)]
    assert pipeline.files()[attachments["blob_path"][0]] == expected_bytes(*path_and_size(url))
    assert pipeline.dead_letters() == []


async def test_source_always_failing_is_dead_lettered_after_four_retries(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline({"faults": [{"path_contains": "down", "statuses": [503], "repeat": True}]})
    trace_id, url = trace(), s3_url("/exports/A1B2C3/down.pdf")
    await pipeline.deliver([xact_body(trace_id, [url])])
    await pipeline.settle()

    history = await pipeline.history(attachment_instance(trace_id, url))
    assert scheduled(history, "xact_transfer") == 5
    assert timer_delays(history) == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    [letter] = pipeline.dead_letters()
    assert (letter.reason.value, letter.category, letter.retry_count) == ("exhausted", "transient", 4)
    assert letter.media_id == media_id(trace_id, url)
    assert "X-Amz-Signature=sig" not in letter.error
    failed = pipeline.table("xact_attachments_failed")
    assert failed.select("status", "retry_count", "http_status").rows() == [("exhausted", 4, 503)]
    assert pipeline.files() == {}


async def test_not_found_and_expired_are_dead_lettered_after_one_attempt(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline({"faults": [{"path_contains": "gone", "statuses": [404], "repeat": True}]})
    trace_id = trace()
    missing = s3_url("/exports/A1B2C3/gone.pdf")
    expired = s3_url("/exports/A1B2C3/old.pdf", signed_at=datetime(2026, 1, 1), expires=3600)
    await pipeline.deliver([xact_body(trace_id, [missing, expired])])
    await pipeline.settle()

    for url in (missing, expired):
        history = await pipeline.history(attachment_instance(trace_id, url))
        assert scheduled(history, "xact_transfer") == 1
        assert timer_delays(history) == []
    letters = {letter.media_id: letter for letter in pipeline.dead_letters()}
    assert set(letters) == {media_id(trace_id, missing), media_id(trace_id, expired)}
    assert all(letter.reason.value == "permanent" and letter.retry_count == 0 for letter in letters.values())
    assert not pipeline.simulator.requests_for("old.pdf")  # decided before any request
    failed = pipeline.table("xact_attachments_failed")
    assert sorted(failed["status"].to_list()) == ["failed_permanent", "failed_permanent"]


async def test_rejected_urls_get_a_row_and_no_download(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline()
    trace_id = trace()
    good = s3_url("/exports/A1B2C3/ok.png", size=500)
    rejected = [
        "https://169.254.169.254/latest/meta-data/creds.txt",
        "http://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/exports/A1B2C3/plain.pdf",
        s3_url("/exports/A1B2C3/tool.exe"),
        "https://evil.example.com/exports/x.pdf",
    ]
    await pipeline.deliver([xact_body(trace_id, [good, *rejected])])
    await pipeline.settle()

    failed = pipeline.table("xact_attachments_failed")
    assert sorted(failed["media_id"].to_list()) == sorted(media_id(trace_id, url) for url in rejected)
    assert set(failed["status"].to_list()) == {"rejected"}
    assert set(failed["error_category"].to_list()) == {"permanent"}
    assert pipeline.table("xact_attachments")["media_id"].to_list() == [media_id(trace_id, good)]
    assert pipeline.dead_letters() == []
    assert [r.path for r in pipeline.simulator.requests] == ["/exports/A1B2C3/ok.png"]


async def test_invalid_and_skipped_events(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline()
    skipped = trace()
    bodies = [
        "{not json",
        "[1, 2]",
        xact_body(skipped, [s3_url("/exports/x/never.pdf")], assignmentId=None),
    ]
    await pipeline.deliver(bodies)
    await pipeline.settle()

    letters = pipeline.dead_letters()
    assert sorted(letter.payload for letter in letters) == sorted(bodies[:2])
    assert {letter.reason.value for letter in letters} == {"invalid"}
    assert pipeline.table("xact_events")["trace_id"].to_list() == [skipped]
    assert await pipeline.host.get_status(xact_instance_id(event_id(skipped))) is None
    assert not pipeline.simulator.requests


async def test_table_service_down_while_recording_is_never_silent(
    make_pipeline: MakePipeline, azurite: Azurite, make_runtime: Callable[..., Runtime]
) -> None:
    """The app's Table endpoint refuses connections (the Blob service still answers): an uploaded
    file cannot stage its row and a missing file cannot record its failure. Each attachment ends
    with a dead letter kept in blob storage and a failed instance, which the purge keeps."""
    tables_down = re.sub(
        r"TableEndpoint=[^;]+", f"TableEndpoint=http://127.0.0.1:{free_port()}/x", azurite.connection_string
    )
    world = {"faults": [{"path_contains": "gone", "statuses": [404], "repeat": True}]}
    pipeline = await make_pipeline(world, AzureWebJobsStorage=tables_down)
    trace_id = trace()
    good, missing = s3_url("/exports/A1B2C3/good.pdf", size=7000), s3_url("/exports/A1B2C3/gone.pdf")
    event = {
        "trace_id": trace_id,
        "event_id": event_id(trace_id),
        "status_subtype": "documentsReceived",
        "assignment_id": "A1B2C3",
        "estimate_version": None,
        "attachments": [good, missing],
        "event_date": "2026-11-22",
        "occurred_at": "2026-11-22T15:04:05+00:00",
        "retry_delays": [300, 600, 1200, 2400],
    }
    instance = xact_instance_id(event_id(trace_id))
    await pipeline.host.start_orchestration(EVENT_ORCHESTRATOR, event, instance_id=instance)
    await pipeline.host.run_until_idle()

    for url in (good, missing):
        child = await pipeline.host.get_status(attachment_instance(trace_id, url))
        assert child is not None and child.runtime_status == "Failed", url
        assert "its dead letter was written to blob storage" in str(child.output)
    parent = await pipeline.host.get_status(instance)
    assert parent is not None and parent.runtime_status == "Failed"

    healthy = make_runtime(Settings(**{**pipeline.env, "AzureWebJobsStorage": azurite.connection_string}))
    letters = {letter.media_id: letter for letter in healthy.dead_letters.list()}
    assert set(letters) == {media_id(trace_id, good), media_id(trace_id, missing)}
    stored = letters[media_id(trace_id, good)]
    assert (stored.reason.value, stored.retry_count) == ("exhausted", 4)  # staging its row kept failing
    assert "not recorded in the tables" in stored.error
    gone = letters[media_id(trace_id, missing)]
    assert (gone.reason.value, gone.category, gone.retry_count) == ("permanent", "permanent", 0)
    assert all(letter.payload["attachment_url"] in (good, missing) for letter in letters.values())
    assert list(pipeline.files().values()) == [expected_bytes(*path_and_size(good))]  # the file is safe

    purged = await purge_finished_instances(
        pipeline.host.durable_client(),
        now=pipeline.clock.now() + timedelta(days=60),
        retention=timedelta(days=1),
    )
    assert purged == 0
    assert await pipeline.host.get_status(instance) is not None


async def test_a_presigned_url_expiring_during_the_retry_schedule_is_permanent(
    make_pipeline: MakePipeline,
) -> None:
    """The source answers 503 while the link's 15 minutes run out on the virtual clock: the attempts
    at +0 and +5 minutes are retried, the one at +15 finds the link expired and stops, without a
    request, as PERMANENT (an expired S3 link cannot be refreshed)."""
    world = {"faults": [{"path_contains": "slow", "statuses": [503], "repeat": True}]}
    pipeline = await make_pipeline(world)
    trace_id = trace()
    url = s3_url("/exports/A1B2C3/slow.pdf", signed_at=START - timedelta(minutes=1), expires=15 * 60)
    await pipeline.deliver([xact_body(trace_id, [url])])
    await pipeline.settle()

    history = await pipeline.history(attachment_instance(trace_id, url))
    assert scheduled(history, "xact_transfer") == 3
    assert timer_delays(history) == [timedelta(minutes=5), timedelta(minutes=10)]
    assert len(pipeline.simulator.requests_for("slow.pdf")) == 2  # the third attempt asked nobody
    [letter] = pipeline.dead_letters()
    assert (letter.reason.value, letter.category, letter.retry_count) == ("permanent", "permanent", 2)
    assert "expired" in letter.error
    failed = pipeline.table("xact_attachments_failed")
    assert failed.select("status", "retry_count").rows() == [("failed_permanent", 2)]


async def test_the_dedup_window_runs_out_on_the_virtual_clock(make_pipeline: MakePipeline) -> None:
    """Delivered again 23 hours later, an event is a duplicate; 25 hours later it is new again and
    its orchestration runs once more. Its xact_events row stays one row."""
    pipeline = await make_pipeline()
    trace_id = trace()
    body = xact_body(trace_id, [])
    instance = xact_instance_id(event_id(trace_id))
    await pipeline.deliver([body])
    await pipeline.settle()
    first = await pipeline.host.get_status(instance)
    assert first is not None and first.runtime_status == "Completed"

    await pipeline.host.advance_clock_to(START + timedelta(hours=23))
    await pipeline.restart()  # a new process: only the latch table remembers the event
    await pipeline.deliver([body])
    await pipeline.settle()
    within = await pipeline.host.get_status(instance)
    assert within is not None and within.created_time == first.created_time  # not run again

    await pipeline.host.advance_clock_to(START + timedelta(hours=25))
    await pipeline.deliver([body])
    await pipeline.settle()
    after = await pipeline.host.get_status(instance)
    assert after is not None and after.runtime_status == "Completed"
    assert after.created_time >= START + timedelta(hours=25)  # the window ran out: run again
    assert pipeline.table("xact_events")["trace_id"].to_list() == [trace_id]
