"""``claimsflow run`` as a user runs it: an event file, a world file, redelivery, the JSON report."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from claimsflow.azurite import Azurite
from claimsflow.cli import app
from claimsflow.simulator import expected_bytes
from shared.lake.reader import read_delta
from shared.runtime import reset_runtime
from tests.e2e.harness import s3_url, xact_body

pytestmark = pytest.mark.e2e


@pytest.fixture
def on_session_azurite(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    yield
    reset_runtime()


def test_run_with_event_file_world_and_redelivery(on_session_azurite: None, tmp_path: Path) -> None:
    good = [s3_url(f"/exports/A1B2C3/doc{n}.pdf", size=5000 + n) for n in range(3)]
    flaky = s3_url("/exports/A1B2C3/wobbly.pdf", size=777)
    down = s3_url("/exports/A1B2C3/down.jpg")
    lines = [
        xact_body("trace-1", good[:2]),
        xact_body("trace-2", [good[2], flaky]),
        xact_body("trace-3", [down]),
        "this line is not json",
        xact_body("trace-1", good[:2]),  # the same event again
        xact_body("trace-4", [], assignmentId=None),
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    world = tmp_path / "world.json"
    world.write_text(
        json.dumps(
            {
                "faults": [
                    {"path_contains": "wobbly", "statuses": [503, 503], "repeat": False},
                    {"path_contains": "down", "statuses": [503], "repeat": True},
                ]
            }
        )
    )
    report_path = tmp_path / "report.json"
    run_name = f"t{uuid.uuid4().hex[:10]}"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--xact-events",
            str(events),
            "--world",
            str(world),
            "--redeliver",
            "--run-name",
            run_name,
            "--report",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "XACT events received" in result.output
    report = json.loads(report_path.read_text())
    assert report["run_name"] == run_name
    assert report["files"]["xact"]["container"] == f"lake{run_name}"
    assert all(f"lake{run_name}@" in info["uri"] for info in report["tables"].values())

    # every body counted once per delivery; the redelivery counts every valid event again as a
    # duplicate (skipped ones too: they take the latch like the others)
    xact = report["events"]["xact"]
    assert xact == {"received": 12, "accepted": 3, "duplicates": 6, "skipped": 1, "invalid": 2}
    assert report["attachments"]["xact"]["dead_lettered"] == 1
    assert report["dead_letters"] == 2  # the invalid line (deduplicated by its hash) and the dead source
    assert report["orchestrations"]["failed"] == 0
    assert report["invariants"] == {
        "ok": True,
        "events_checked": 3,
        "attachments_checked": 5,
        "violations": [],
    }

    options = report["storage_options"]
    tables = {name: read_delta(info["uri"], options) for name, info in report["tables"].items()}
    assert {name: info["rows"] for name, info in report["tables"].items()} == {
        name: frame.height for name, frame in tables.items()
    }
    assert sorted(tables["xact_events"]["trace_id"].to_list()) == ["trace-1", "trace-2", "trace-3", "trace-4"]
    attachments = tables["xact_attachments"]
    assert attachments.height == 4
    assert tables["xact_attachments_failed"].select("status", "retry_count").rows() == [("exhausted", 4)]

    files = report["files"]["xact"]
    container = BlobServiceClient.from_connection_string(
        report["storage_connection_string"]
    ).get_container_client(files["container"])
    blobs = {b.name: b for b in container.list_blobs(name_starts_with=files["prefix"])}
    assert len(blobs) == 4
    for url in [*good, flaky]:
        path = urlsplit(url).path
        size = int(url.rsplit("size=", 1)[1])
        [name] = [n for n in blobs if n.endswith(path.rsplit("/", 1)[1])]
        assert container.download_blob(name).readall() == expected_bytes(path, size)


def test_run_refuses_without_input() -> None:
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code != 0
    assert "--xact-events" in result.output


def test_unreadable_event_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--xact-events", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2
    assert "could not complete" in result.output


@pytest.mark.parametrize("name", ["Demo", "has-dash", "x" * 33, ""])
def test_a_run_name_that_cannot_name_storage_is_refused(name: str, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    result = CliRunner().invoke(app, ["run", "--xact-events", str(events), "--run-name", name])
    assert result.exit_code == 2
    assert "lower-case letters or digits" in result.output


def test_run_with_claimx_events_world_and_report(on_session_azurite: None, tmp_path: Path) -> None:
    from claimsflow.claimx_samples import (
        claimx_body,
        media_item,
        project_export,
        task_assignment,
        video_report,
    )

    at = "2026-11-20T10:00:00Z"
    pid, ghost = 5_600_001, 5_600_009
    lines = [
        claimx_body("PROJECT_CREATED", pid, at),
        claimx_body("PROJECT_FILE_ADDED", pid, at, mediaId=11),
        claimx_body("PROJECT_FILE_ADDED", pid, at, mediaId=12),
        claimx_body("CUSTOM_TASK_COMPLETED", pid, at, taskAssignmentId=21),
        claimx_body("VIDEO_COLLABORATION_COMPLETED", pid, at, videoCollaborationId=31),
        claimx_body("PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL", pid, at),
        claimx_body("POLICYHOLDER_INVITED", pid, None),  # no ingestedAt: the line's enqueued time
        claimx_body("PROJECT_CREATED", ghost, at),  # unknown to ClaimX: dead-lettered
        claimx_body("PROJECT_ARCHIVED", pid, at),  # unknown type: skipped (each delivery)
        "not json",
        claimx_body("PROJECT_CREATED", pid, at),  # the same event again
    ]
    events = tmp_path / "claimx.jsonl"
    events.write_text("\n".join(lines) + "\n")
    world = tmp_path / "world.json"
    world.write_text(
        json.dumps(
            {
                "claimx": {
                    "projects": {str(pid): project_export(pid)},
                    "media": {str(pid): [media_item(11, size=3000), media_item(12, name="tool.exe")]},
                    "tasks": {"21": task_assignment(21, pid)},
                    "video": {str(pid): video_report(pid, 31)},
                },
                "faults": [{"path_contains": f"/export/project/{pid}", "statuses": [503]}],
            }
        )
    )
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--claimx-events",
            str(events),
            "--world",
            str(world),
            "--redeliver",
            "--report",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ClaimX events received" in result.output
    report = json.loads(report_path.read_text())
    assert report["events"]["claimx"] == {
        "received": 22,
        "accepted": 8,
        "duplicates": 10,
        "skipped": 2,
        "invalid": 2,
    }
    assert report["events"]["xact"]["received"] == 0
    assert report["attachments"]["claimx"] == {"uploaded": 1, "rejected": 1, "dead_lettered": 0}
    assert report["dead_letters"] == 2  # the line that is not JSON, the unknown project
    assert report["orchestrations"]["failed"] == 0

    claimx_tables = {
        "claimx_events",
        "claimx_projects",
        "claimx_contacts",
        "claimx_attachment_metadata",
        "claimx_tasks",
        "claimx_task_templates",
        "claimx_external_links",
        "claimx_video_collab",
        "claimx_attachments",
        "claimx_attachments_failed",
    }
    assert claimx_tables <= set(report["tables"])
    options = report["storage_options"]
    frames = {name: read_delta(report["tables"][name]["uri"], options) for name in claimx_tables}
    assert {name: report["tables"][name]["rows"] for name in claimx_tables} == {
        name: frame.height for name, frame in frames.items()
    }
    assert frames["claimx_events"].height == 9
    assert report["tables"]["xact_events"]["rows"] == 0  # listed, empty
    [project] = frames["claimx_projects"].iter_rows(named=True)
    assert project["xa_autolink_fail"] is True and project["city"] == "Denver"
    assert project["policyholder_invited_at"] is not None
    assert frames["claimx_attachments_failed"].select("media_id", "status").rows() == [("12", "rejected")]

    files = report["files"]["claimx"]
    assert files["prefix"].endswith("claimx/attachments/")
    container = BlobServiceClient.from_connection_string(
        report["storage_connection_string"]
    ).get_container_client(files["container"])
    blobs = [b.name for b in container.list_blobs(name_starts_with=files["prefix"])]
    assert blobs == [f"{files['prefix']}{pid}/media/11_kitchen_01.jpg"]
    assert container.download_blob(blobs[0]).readall() == expected_bytes("/service/cxedirest/media/11", 3000)


def test_generate_makes_claimx_traffic_and_its_world_too(on_session_azurite: None, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["run", "--generate", "40", "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    for domain in ("xact", "claimx"):
        events = report["events"][domain]
        assert events["received"] == 40
        assert (
            events["received"]
            == events["accepted"] + events["duplicates"] + events["skipped"] + events["invalid"]
        )
    claimx = report["events"]["claimx"]
    assert claimx["accepted"] > 20
    assert report["attachments"]["claimx"]["uploaded"] > 0
    assert report["tables"]["claimx_events"]["rows"] == claimx["accepted"] + claimx["skipped"]
    assert report["tables"]["claimx_projects"]["rows"] > 0
    assert report["orchestrations"]["failed"] == 0
