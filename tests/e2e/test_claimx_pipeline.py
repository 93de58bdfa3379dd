"""The ClaimX pipeline end to end: ``function_app.app`` on the local host, real Azurite, the real
Durable SDK replay, the ClaimX API and media served by the simulator, Delta tables read back."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from claimsflow.claimx_samples import claimx_body, media_item, project_export, task_assignment, video_report
from claimsflow.simulator import expected_bytes
from local_host import EventType
from shared.claimx.events import trace_id
from shared.claimx.ingest import instance_id
from shared.claimx.orchestration import EVENT_ORCHESTRATOR, MEDIA_ORCHESTRATOR, media_instance_id
from shared.claimx.tables import CLAIMX_TABLES
from shared.metrics import INSTANCES_ENDED, INSTANCES_STARTED
from tests.e2e.harness import CLAIMX_TOKEN, START, Pipeline

pytestmark = pytest.mark.e2e

MakePipeline = Callable[..., Awaitable[Pipeline]]
AT = "2026-11-23T08:30:00Z"
ORCHESTRATORS = (EVENT_ORCHESTRATOR, MEDIA_ORCHESTRATOR)
AT_TIME = datetime(2026, 11, 23, 8, 30, tzinfo=START.tzinfo)


def tid(event_type: str, pid: int, **ids: str) -> str:
    return trace_id(str(pid), event_type, AT, **ids)


def scheduled(history: list[dict[str, Any]], name: str) -> int:
    return sum(1 for e in history if e["EventType"] == EventType.TaskScheduled and e.get("Name") == name)


def timer_delays(history: list[dict[str, Any]]) -> list[timedelta]:
    delays, now = [], None
    for event in history:
        if event["EventType"] == EventType.OrchestratorStarted:
            now = datetime.fromisoformat(event["Timestamp"])
        elif event["EventType"] == EventType.TimerCreated:
            assert now is not None
            delays.append(datetime.fromisoformat(event["FireAt"]) - now)
    return delays


def keys(frame: pl.DataFrame, *columns: str) -> set[Any]:
    if len(columns) == 1:
        return set(frame[columns[0]].to_list())
    return set(frame.select(columns).iter_rows())


def table_or_empty(pipeline: Pipeline, name: str) -> pl.DataFrame:
    try:
        return pipeline.table(name)
    except Exception as exc:  # a table nothing was staged for was never created
        if "TableNotFound" in type(exc).__name__ or "no log files" in str(exc).lower():
            return pl.DataFrame()
        raise


def snapshot(pipeline: Pipeline) -> dict[str, list[tuple[Any, ...]]]:
    return {spec.name: sorted(table_or_empty(pipeline, spec.name).rows(), key=repr) for spec in CLAIMX_TABLES}


# One project per event type, so each event's rows are its own.
P = {
    name: 5_100_000 + n
    for n, name in enumerate(
        [
            "created",
            "mfn",
            "file",
            "assigned",
            "completed",
            "invited",
            "joined",
            "xa",
            "invite",
            "video",
            "unknown",
        ]
    )
}


def ten_types_world() -> dict[str, Any]:
    projects = {str(pid): project_export(pid) for name, pid in P.items() if name not in ("xa", "unknown")}
    return {
        "claimx": {
            "projects": projects,
            "media": {str(P["file"]): [media_item(31, signed_at=START), media_item(32, name="other.png")]},
            "tasks": {
                "41": task_assignment(41, P["assigned"]),
                "51": task_assignment(51, P["completed"], task_id=1234),
            },
            "video": {
                str(P["invite"]): video_report(P["invite"], 91),
                str(P["video"]): video_report(P["video"], 101),
            },
        }
    }


def ten_types_bodies() -> list[str]:
    return [
        claimx_body("PROJECT_CREATED", P["created"], AT),
        claimx_body("PROJECT_MFN_ADDED", str(P["mfn"]), AT, masterFileName="MFN-NEW"),
        claimx_body("PROJECT_FILE_ADDED", P["file"], AT, mediaId=31),
        claimx_body("CUSTOM_TASK_ASSIGNED", P["assigned"], AT, taskAssignmentId=41),
        claimx_body("CUSTOM_TASK_COMPLETED", P["completed"], AT, taskAssignmentId="51"),
        claimx_body("POLICYHOLDER_INVITED", P["invited"], AT),
        claimx_body("POLICYHOLDER_JOINED", P["joined"], AT),
        claimx_body("PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL", P["xa"], AT),
        claimx_body("VIDEO_COLLABORATION_INVITE_SENT", P["invite"], AT, videoCollaborationId=91),
        claimx_body("VIDEO_COLLABORATION_COMPLETED", P["video"], AT, videoCollaborationId=101),
        claimx_body("PROJECT_ARCHIVED", P["unknown"], AT),
    ]


async def test_each_event_type_writes_its_rows(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline(ten_types_world())
    await pipeline.deliver_claimx(ten_types_bodies())
    await pipeline.settle()

    events = pipeline.table("claimx_events")
    assert events.height == 11
    assert keys(events, "project_id") == {str(pid) for pid in P.values()}

    projects = {row["project_id"]: row for row in pipeline.table("claimx_projects").iter_rows(named=True)}
    fetched = {
        P[n]
        for n in ("created", "mfn", "file", "assigned", "completed", "invited", "joined", "invite", "video")
    }
    assert set(projects) == {str(pid) for pid in fetched | {P["xa"]}}
    for pid in fetched:
        row = projects[str(pid)]
        assert row["project_number"] == f"CLM-2026-{pid % 100000:05d}"
        assert row["primary_email"] == f"pat{pid}@example.com"
        assert row["company_name"] == "Carrier Mutual" and row["square_footage"] == 1850.5
        assert row["xa_autolink_fail"] is None
        assert row["updated_at"] == AT_TIME and row["last_enriched_at"] == AT_TIME
    assert projects[str(P["mfn"])]["master_file_name"] == "MFN-NEW"
    assert projects[str(P["created"])]["master_file_name"] == f"MFN{P['created']}"
    assert projects[str(P["invited"])]["policyholder_invited_at"] == AT_TIME
    assert projects[str(P["invited"])]["policyholder_joined_at"] is None
    assert projects[str(P["joined"])]["policyholder_joined_at"] == AT_TIME
    xa = projects[str(P["xa"])]
    assert (xa["xa_autolink_fail"], xa["xa_autolink_fail_at"], xa["project_number"]) == (True, AT_TIME, None)
    assert xa["trace_id"] == tid("PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL", P["xa"])

    contacts = keys(pipeline.table("claimx_contacts"), "project_id", "contact_email", "contact_type")
    expected_contacts = {(str(pid), f"pat{pid}@example.com", "POLICYHOLDER") for pid in fetched}
    expected_contacts |= {(str(pid), f"rep{pid}@carrier.example.com", "CLAIM_REP") for pid in fetched}
    expected_contacts |= {
        (str(P[n]), f"holder{P[n]}@example.com", "POLICYHOLDER") for n in ("assigned", "completed")
    }
    assert contacts == expected_contacts

    media = pipeline.table("claimx_attachment_metadata")
    assert media["media_id"].to_list() == ["31"]  # only the media the event names
    assert (
        "deadbeef" not in media["full_download_link"][0] and "sign=REDACTED" in media["full_download_link"][0]
    )
    tasks = pipeline.table("claimx_tasks")
    assert keys(tasks, "assignment_id", "project_id", "task_id") == {
        ("41", str(P["assigned"]), "27019"),
        ("51", str(P["completed"]), "1234"),
    }
    assert keys(pipeline.table("claimx_task_templates"), "task_id") == {"27019", "1234"}
    links = pipeline.table("claimx_external_links")
    assert keys(links, "link_id", "assignment_id") == {("410", "41"), ("510", "51")}
    assert not any("secret" in url for url in links["url"].to_list())
    video = pipeline.table("claimx_video_collab")
    assert keys(video, "video_collaboration_id", "project_id") == {
        ("91", str(P["invite"])),
        ("101", str(P["video"])),
    }

    attachments = pipeline.table("claimx_attachments")
    [row] = attachments.iter_rows(named=True)
    assert (row["media_id"], row["blob_path"], row["bytes"]) == (
        "31",
        f"{P['file']}/media/31_kitchen_01.jpg",
        4096,
    )
    files = pipeline.claimx_files()
    assert files == {row["blob_path"]: expected_bytes("/service/cxedirest/media/31", 4096)}
    assert table_or_empty(pipeline, "claimx_attachments_failed").is_empty()
    assert pipeline.dead_letters() == []

    api_paths = [r.path for r in pipeline.simulator.requests]
    assert not any(str(P["xa"]) in path or str(P["unknown"]) in path for path in api_paths)
    assert await pipeline.host.get_status(instance_id(tid("PROJECT_ARCHIVED", P["unknown"]))) is None
    s3 = [r for r in pipeline.simulator.requests if r.host == "claimxperience.s3.amazonaws.com"]
    assert s3 and all(r.authorization is None for r in s3)
    claimx = [r for r in pipeline.simulator.requests if r.host == "www.claimxperience.com"]
    assert claimx and all(r.authorization == f"Basic {CLAIMX_TOKEN}" for r in claimx)


async def test_processing_again_and_every_batch_twice_leave_every_table_unchanged(
    make_pipeline: MakePipeline,
) -> None:
    first = await make_pipeline(ten_types_world())
    bodies = ten_types_bodies()
    half = len(bodies) // 2
    for batch in (bodies[:half], bodies[half:]):
        await first.deliver_claimx(batch)
        await first.host.run_until_idle()
        await first.restart()
        await first.deliver_claimx(batch)  # the batch again, after the restart
    await first.settle()
    before, files = snapshot(first), first.claimx_files()
    assert len(before["claimx_events"]) == 11 and len(before["claimx_attachments"]) == 1

    # The same events processed again from scratch (new task hub: no dedup memory) into the same lake.
    lake = first.settings.lake_tables_uri.split("//", 1)[1].split("@", 1)[0]
    second = await make_pipeline(ten_types_world(), lake=lake)
    await second.deliver_claimx(bodies)
    await second.deliver_claimx(bodies)
    await second.settle()
    assert snapshot(second) == before
    assert second.claimx_files() == files
    assert second.dead_letters() == []


async def test_a_sparse_row_after_a_full_project_row_keeps_the_full_values(
    make_pipeline: MakePipeline,
) -> None:
    pid = 5_200_001
    pipeline = await make_pipeline({"claimx": {"projects": {str(pid): project_export(pid)}}})
    await pipeline.deliver_claimx([claimx_body("PROJECT_CREATED", pid, AT)])
    await pipeline.settle()
    full = pipeline.table("claimx_projects").row(0, named=True)
    assert full["xa_autolink_fail"] is None and full["city"] == "Denver"

    later = "2026-11-23T08:45:00Z"
    await pipeline.deliver_claimx(
        [
            claimx_body("PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL", pid, later),
            claimx_body("POLICYHOLDER_JOINED", pid, later),
        ]
    )
    await pipeline.settle()
    [row] = pipeline.table("claimx_projects").iter_rows(named=True)
    assert row["xa_autolink_fail"] is True
    assert row["xa_autolink_fail_at"] == row["policyholder_joined_at"] == datetime.fromisoformat(later)
    for column, value in full.items():
        if column not in (
            "xa_autolink_fail",
            "xa_autolink_fail_at",
            "policyholder_joined_at",
            "trace_id",
            "updated_at",
        ):
            assert row[column] == value, column
    assert row["created_at"] == full["created_at"] == AT_TIME


async def test_429_and_503_are_retried_to_success(make_pipeline: MakePipeline) -> None:
    pid = 5_200_002
    pipeline = await make_pipeline(
        {
            "claimx": {"projects": {str(pid): project_export(pid)}},
            "faults": [{"path_contains": f"/export/project/{pid}", "statuses": [429, 503]}],
        }
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_CREATED", pid, AT)])
    await pipeline.settle()
    history = await pipeline.history(instance_id(tid("PROJECT_CREATED", pid)))
    assert scheduled(history, "claimx_enrich") == 1  # the client's local retry absorbed both
    assert timer_delays(history) == []
    assert [r.status for r in pipeline.simulator.requests] == [429, 503, 200]
    assert pipeline.table("claimx_projects")["project_id"].to_list() == [str(pid)]


async def test_401_is_retried_as_auth_on_the_schedule(make_pipeline: MakePipeline) -> None:
    pid = 5_200_003
    pipeline = await make_pipeline(
        {
            "claimx": {"projects": {str(pid): project_export(pid)}},
            "faults": [{"path_contains": f"/export/project/{pid}", "statuses": [401]}],
        }
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_CREATED", pid, AT)])
    await pipeline.settle()
    history = await pipeline.history(instance_id(tid("PROJECT_CREATED", pid)))
    assert scheduled(history, "claimx_enrich") == 2
    assert timer_delays(history) == [timedelta(minutes=5)]
    assert [r.status for r in pipeline.simulator.requests] == [401, 200]
    assert pipeline.table("claimx_projects")["project_id"].to_list() == [str(pid)]
    assert pipeline.dead_letters() == []


async def test_a_404_project_is_dead_lettered_after_one_attempt(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline({"claimx": {"projects": {}}})
    pid = 5_200_004
    await pipeline.deliver_claimx([claimx_body("PROJECT_CREATED", pid, AT)])
    await pipeline.settle()
    history = await pipeline.history(instance_id(tid("PROJECT_CREATED", pid)))
    assert scheduled(history, "claimx_enrich") == 1
    assert timer_delays(history) == []
    [letter] = pipeline.dead_letters()
    assert (letter.stage, letter.reason.value, letter.category, letter.retry_count) == (
        "claimx_enrich",
        "permanent",
        "permanent",
        0,
    )
    assert letter.trace_id == tid("PROJECT_CREATED", pid)
    assert CLAIMX_TOKEN not in letter.error and "404" in letter.error
    assert pipeline.table("claimx_events")["project_id"].to_list() == [str(pid)]


async def test_invalid_bodies_and_bad_ids(make_pipeline: MakePipeline) -> None:
    pid = 5_200_005
    pipeline = await make_pipeline(
        {"claimx": {"projects": {str(pid): project_export(pid)}, "media": {str(pid): [media_item(7)]}}}
    )
    invalid = ["{broken", "[1]", '{"eventType": "PROJECT_CREATED"}', '{"eventType": "X", "projectId": "p-1"}']
    await pipeline.deliver_claimx(
        [
            *invalid,
            claimx_body("CUSTOM_TASK_ASSIGNED", pid, AT, taskAssignmentId="T-9"),
            claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=8),
        ]
    )
    await pipeline.settle()
    raw = sorted(letter.payload for letter in pipeline.dead_letters() if letter.stage == "claimx_ingest")
    assert raw == sorted(invalid)
    letters = {f"{letter.stage}:{letter.trace_id}": letter for letter in pipeline.dead_letters()}
    task = letters["claimx_enrich:" + tid("CUSTOM_TASK_ASSIGNED", pid, task_assignment_id="T-9")]
    assert (task.reason.value, task.retry_count) == ("permanent", 0) and "not numeric" in task.error
    media = letters["claimx_enrich:" + tid("PROJECT_FILE_ADDED", pid, media_id="8")]
    assert (media.reason.value, media.retry_count) == ("permanent", 0) and "not found" in media.error
    assert pipeline.table("claimx_events").height == 2


async def test_five_failures_open_the_circuit_and_orchestrations_wait_for_it(
    make_pipeline: MakePipeline,
) -> None:
    pids = [5_300_001, 5_300_002, 5_300_003]
    pipeline = await make_pipeline(
        {
            "claimx": {"projects": {str(pid): project_export(pid) for pid in pids}},
            "faults": [{"path_contains": "/export/project/", "statuses": [503] * 5}],
        }
    )
    # The first event's three tries fail: a real failure, so it spends a retry (5 minutes).
    await pipeline.deliver_claimx([claimx_body("PROJECT_CREATED", pids[0], AT)])
    await pipeline.host.run_until(START + timedelta(seconds=1))
    # Two more failures open the circuit; then calls are refused without a request.
    await pipeline.deliver_claimx([claimx_body("PROJECT_CREATED", pid, AT) for pid in pids[1:]])
    await pipeline.host.run_until(START + timedelta(seconds=2))
    assert len(pipeline.simulator.requests) == 5
    await pipeline.settle()

    assert sorted(pipeline.table("claimx_projects")["project_id"].to_list()) == [str(p) for p in pids]
    first = await pipeline.history(instance_id(tid("PROJECT_CREATED", pids[0])))
    assert timer_delays(first)[0] == timedelta(minutes=5)
    for pid in pids[1:]:
        history = await pipeline.history(instance_id(tid("PROJECT_CREATED", pid)))
        delays = timer_delays(history)
        assert delays and all(d < timedelta(minutes=2) for d in delays), delays  # waited for the circuit
        output = [e for e in history if e["EventType"] == EventType.ExecutionCompleted]
        assert '"retry_count": 0' in output[0]["Result"]
    statuses = [r.status for r in pipeline.simulator.requests]
    assert statuses[:5] == [503] * 5 and set(statuses[5:]) == {200}
    assert pipeline.dead_letters() == []


def _media_world(
    pid: int, *items: dict[str, Any], faults: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "claimx": {"projects": {str(pid): project_export(pid)}, "media": {str(pid): list(items)}},
        "faults": faults or [],
    }


async def test_an_expired_link_is_refreshed_before_the_retry(make_pipeline: MakePipeline) -> None:
    pid = 5_400_001
    pipeline = await make_pipeline(
        _media_world(
            pid,
            media_item(61, size=5000, lifetime_ms=120_000),
            faults=[{"path_contains": "/media/61", "statuses": [503]}],
        ),
        TRANSFER_TIMEOUT_SECONDS="60",
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=61)])
    await pipeline.settle()
    # The first try met a 503; five minutes later the two-minute link had expired: refreshed first.
    history = await pipeline.history(
        media_instance_id(instance_id(tid("PROJECT_FILE_ADDED", pid, media_id="61")), "61")
    )
    assert scheduled(history, "claimx_download") == 2
    media_calls = [
        r for r in pipeline.simulator.requests if r.path.endswith("/media") and "mediaIds=61" in r.query
    ]
    assert len(media_calls) == 2  # the enrichment, then the refresh
    hops = [r for r in pipeline.simulator.requests if r.path.endswith("/media/61")]
    assert [(r.host, r.status) for r in hops] == [
        ("www.claimxperience.com", 503),
        ("www.claimxperience.com", 302),
        ("claimxperience.s3.amazonaws.com", 200),
    ]
    assert hops[0].query != hops[1].query  # a newer signature
    [row] = pipeline.table("claimx_attachments").iter_rows(named=True)
    assert pipeline.claimx_files()[row["blob_path"]] == expected_bytes("/service/cxedirest/media/61", 5000)


async def test_a_link_expiring_within_the_download_timeout_is_refreshed_first(
    make_pipeline: MakePipeline,
) -> None:
    pid = 5_400_008
    pipeline = await make_pipeline(
        _media_world(pid, media_item(68, size=900, lifetime_ms=30_000)),
        TRANSFER_TIMEOUT_SECONDS="60",
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=68)])
    await pipeline.settle()
    media_calls = [
        r for r in pipeline.simulator.requests if r.path.endswith("/media") and "mediaIds=68" in r.query
    ]
    assert len(media_calls) == 2
    assert pipeline.table("claimx_attachments")["media_id"].to_list() == ["68"]


async def test_a_403_link_is_refreshed_and_downloaded(make_pipeline: MakePipeline) -> None:
    pid = 5_400_002
    pipeline = await make_pipeline(
        _media_world(
            pid, media_item(62, size=700), faults=[{"path_contains": "/media/62", "statuses": [403]}]
        )
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=62)])
    await pipeline.settle()
    statuses = [(r.host, r.status) for r in pipeline.simulator.requests if r.path.endswith("/media/62")]
    assert statuses == [
        ("www.claimxperience.com", 403),
        ("www.claimxperience.com", 302),
        ("claimxperience.s3.amazonaws.com", 200),
    ]
    history = await pipeline.history(
        media_instance_id(instance_id(tid("PROJECT_FILE_ADDED", pid, media_id="62")), "62")
    )
    assert scheduled(history, "claimx_download") == 1
    assert pipeline.table("claimx_attachments")["media_id"].to_list() == ["62"]
    assert pipeline.dead_letters() == []


async def test_a_404_media_link_is_dead_lettered_without_a_refresh(make_pipeline: MakePipeline) -> None:
    pid = 5_400_003
    pipeline = await make_pipeline(
        _media_world(
            pid, media_item(63), faults=[{"path_contains": "/media/63", "statuses": [404], "repeat": True}]
        )
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=63)])
    await pipeline.settle()
    assert len([r for r in pipeline.simulator.requests if "mediaIds=63" in r.query]) == 1
    [letter] = pipeline.dead_letters()
    assert (letter.stage, letter.reason.value, letter.retry_count, letter.media_id) == (
        "claimx_download",
        "permanent",
        0,
        "63",
    )
    failed = pipeline.table("claimx_attachments_failed").row(0, named=True)
    assert (failed["status"], failed["http_status"], failed["project_id"]) == (
        "failed_permanent",
        404,
        str(pid),
    )
    assert "sign=" not in failed["attachment_url"]


async def test_claimx_work_is_counted_and_logged_with_its_context(
    make_pipeline: MakePipeline, every_log_line: io.StringIO
) -> None:
    """Like XACT's: each orchestration counted once as started and ended under the claimx domain, and
    an activity's log lines carry the domain, the stage and the trace."""
    pid = 5_400_004
    pipeline = await make_pipeline(
        _media_world(
            pid, media_item(64), faults=[{"path_contains": "/media/64", "statuses": [404], "repeat": True}]
        )
    )
    started = {name: INSTANCES_STARTED.total(domain="claimx", orchestrator=name) for name in ORCHESTRATORS}
    ended = {name: INSTANCES_ENDED.total(domain="claimx", orchestrator=name) for name in ORCHESTRATORS}
    await pipeline.deliver_claimx([claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=64)])
    await pipeline.settle()
    for name in ORCHESTRATORS:
        assert INSTANCES_STARTED.total(domain="claimx", orchestrator=name) == started[name] + 1
        assert INSTANCES_ENDED.total(domain="claimx", orchestrator=name) == ended[name] + 1
    lines = [json.loads(line) for line in every_log_line.getvalue().splitlines()]
    [failure] = [line for line in lines if line["message"] == "claimx media download failed"]
    assert (failure["domain"], failure["stage"], failure["trace_id"]) == (
        "claimx",
        "claimx_download",
        tid("PROJECT_FILE_ADDED", pid, media_id="64"),
    )


async def test_a_redirect_to_a_private_address_is_refused(make_pipeline: MakePipeline) -> None:
    pid = 5_400_004
    pipeline = await make_pipeline(
        _media_world(
            pid,
            media_item(64),
            faults=[
                {"path_contains": "/media/64", "redirect": "https://169.254.169.254/latest/meta-data/x.jpg"}
            ],
        )
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=64)])
    await pipeline.settle()
    assert not [r for r in pipeline.simulator.requests if "meta-data" in r.path]
    [letter] = pipeline.dead_letters()
    assert (letter.reason.value, letter.category) == ("permanent", "permanent")
    assert "169.254.169.254" in letter.error and "rejected" in letter.error
    assert pipeline.table("claimx_attachments_failed")["status"].to_list() == ["failed_permanent"]
    assert pipeline.claimx_files() == {}


async def test_links_on_other_hosts_are_rejected_without_a_request(make_pipeline: MakePipeline) -> None:
    pid = 5_400_005
    pipeline = await make_pipeline(
        _media_world(
            pid,
            media_item(65, link="https://evil.example.com/media/65.jpg"),
            media_item(66, name="tool.exe"),
        )
    )
    await pipeline.deliver_claimx(
        [
            claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=65),
            claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=66),
        ]
    )
    await pipeline.settle()
    failed = pipeline.table("claimx_attachments_failed")
    assert sorted(failed.select("media_id", "status").rows()) == [("65", "rejected"), ("66", "rejected")]
    assert not [
        r for r in pipeline.simulator.requests if "/media/6" in r.path and not r.path.endswith("/media")
    ]
    assert pipeline.dead_letters() == []
    assert sorted(pipeline.table("claimx_attachment_metadata")["media_id"].to_list()) == ["65", "66"]


async def test_media_with_one_name_get_distinct_sanitised_paths(make_pipeline: MakePipeline) -> None:
    pid = 5_400_006
    pipeline = await make_pipeline(
        _media_world(
            pid,
            media_item(71, name="photo.jpg", size=100),
            media_item(72, name="photo.jpg", size=200),
            media_item(73, name="../../Kitchen Wall #2.JPG", size=300),
            media_item(74, name="..", size=50, link="https://www.claimxperience.com/m/74.png?size=50"),
        )
    )
    await pipeline.deliver_claimx(
        [claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=m) for m in (71, 72, 73, 74)]
    )
    await pipeline.settle()
    paths = dict(pipeline.table("claimx_attachments").select("media_id", "blob_path").rows())
    assert paths == {
        "71": f"{pid}/media/71_photo.jpg",
        "72": f"{pid}/media/72_photo.jpg",
        "73": f"{pid}/media/73_Kitchen_Wall__2.JPG",
        "74": f"{pid}/media/74_media_74",
    }
    files = pipeline.claimx_files()
    assert files[paths["71"]] == expected_bytes("/service/cxedirest/media/71", 100)
    assert files[paths["72"]] == expected_bytes("/service/cxedirest/media/72", 200)
    assert files[paths["74"]] == expected_bytes("/m/74.png", 50)


async def test_a_large_file_cut_off_resumes_with_range_requests(make_pipeline: MakePipeline) -> None:
    pid = 5_400_007
    size = 51 * 1024 * 1024
    pipeline = await make_pipeline(
        _media_world(
            pid,
            media_item(81, name="walkthrough.mp4", size=size),
            faults=[{"path_contains": "/media/81", "cut_after": 20 * 1024 * 1024, "times": 2}],
        )
    )
    await pipeline.deliver_claimx([claimx_body("PROJECT_FILE_ADDED", pid, AT, mediaId=81)])
    await pipeline.settle()
    s3 = [
        r
        for r in pipeline.simulator.requests
        if r.host.startswith("claimxperience.s3") and "/media/81" in r.path
    ]
    assert [r.range is not None for r in s3] == [False, True, True]
    starts = [int(r.range.removeprefix("bytes=").split("-")[0]) for r in s3[1:] if r.range]
    assert 0 < starts[0] < starts[1] < size  # each try resumed after the staged prefix
    assert sum(r.bytes_sent for r in s3) < size + 8 * 1024 * 1024  # only unstaged blocks fetched twice
    history = await pipeline.history(
        media_instance_id(instance_id(tid("PROJECT_FILE_ADDED", pid, media_id="81")), "81")
    )
    assert scheduled(history, "claimx_download") == 1  # resumed within the attempt
    [row] = pipeline.table("claimx_attachments").iter_rows(named=True)
    assert row["bytes"] == size
    assert pipeline.claimx_files()[row["blob_path"]] == expected_bytes("/service/cxedirest/media/81", size)


async def test_the_poll_timer_hands_eventhouse_rows_to_the_ingest(make_pipeline: MakePipeline) -> None:
    pids = [5_500_001, 5_500_002]
    ingested = (START - timedelta(minutes=10)).isoformat()
    rows = [
        {"ingestion_time": ingested, "eventType": "PROJECT_CREATED", "projectId": pids[0], "ingestedAt": AT},
        {"ingestion_time": ingested, "eventType": "PROJECT_CREATED", "projectId": pids[1]},  # no ingestedAt
        {"ingestion_time": ingested, "eventType": "PROJECT_CREATED", "projectId": pids[0], "ingestedAt": AT},
    ]
    pipeline = await make_pipeline(
        {
            "claimx": {"projects": {str(p): project_export(p) for p in pids}},
            "eventhouse": {"ClaimXEvents": rows},
        },
        CLAIMX_EVENTHOUSE_CLUSTER_URL="{simulator}",
        CLAIMX_EVENTHOUSE_DATABASE="claimx",
    )
    outcome = await pipeline.host.fire_timer("claimx_poll")
    assert outcome.succeeded, outcome.errors
    await pipeline.settle()
    events = pipeline.table("claimx_events")
    assert sorted(events["project_id"].to_list()) == [str(p) for p in pids]  # the identical row is one event
    no_text = events.filter(events["project_id"] == str(pids[1])).row(0, named=True)
    assert no_text["ingested_at"] == START - timedelta(minutes=10)  # the ingestion time stands in
    assert sorted(pipeline.table("claimx_projects")["project_id"].to_list()) == [str(p) for p in pids]
    queries = len(pipeline.simulator.claimx.queries)
    assert (await pipeline.host.fire_timer("claimx_poll")).succeeded
    await pipeline.settle()
    assert pipeline.table("claimx_events").height == 2
    assert len(pipeline.simulator.claimx.queries) == queries + 1


async def test_the_poller_is_off_unless_configured(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline({"eventhouse": {"ClaimXEvents": []}})
    assert (await pipeline.host.fire_timer("claimx_poll")).succeeded
    assert pipeline.simulator.requests == []
