"""``claimsflow run`` as a user runs it: an event file, a world file, redelivery, the JSON report."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from claimsflow.azurite import Azurite
from claimsflow.cli import app
from claimsflow.simulator import expected_bytes
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

    # every body counted once per delivery; the redelivery counts everything again, as duplicates
    xact = report["events"]["xact"]
    assert xact == {"received": 12, "accepted": 3, "duplicates": 5, "skipped": 2, "invalid": 2}
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
    tables = {
        name: pl.read_delta(info["uri"], storage_options=options) for name, info in report["tables"].items()
    }
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
