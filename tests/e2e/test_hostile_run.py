"""Issue 9's acceptance, as a user meets it: ``claimsflow run --xact-events F`` over twenty good
lines and the seven hostile ones (and over each hostile class on its own) exits 0; the hostile
bodies are counted invalid (the BOM one accepted), every other event's rows and files are there,
nothing is written outside the attachments prefix, both ``photo.jpg`` files are stored byte-exact
at distinct paths, and no Delta cell holds a signature value or a password."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from claimsflow.azurite import Azurite
from claimsflow.cli import app
from claimsflow.simulator import expected_bytes
from shared.lake.reader import read_delta
from shared.runtime import reset_runtime
from tests.hostile import S3_HOST, body, issue_lines

pytestmark = pytest.mark.e2e

SIGNATURE = f"SIG{uuid.uuid4().hex}"
CREDENTIAL = f"AKIA{uuid.uuid4().hex[:16].upper()}"
PASSWORD = f"Pw{uuid.uuid4().hex[:12]}"
SECRETS = (SIGNATURE, CREDENTIAL, PASSWORD)
INVALID = {"date in year 9999 with a -23:00 offset", "100,000 nested brackets", "a 40,000-character author"}


def url(path: str, size: int = 4096) -> str:
    stamp = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y%m%dT%H%M%SZ")
    return (
        f"https://{S3_HOST}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}%2F20261122"
        f"&X-Amz-Date={stamp}&X-Amz-Expires=604800&X-Amz-Signature={SIGNATURE}&size={size}"
    )


def good_lines(count: int, prefix: str) -> dict[str, str]:
    """Good events whose data also carries a password, in text and as a JSON member."""
    return {
        f"{prefix}-{n}": body(
            f"{prefix}-{n}",
            [url(f"/exports/{prefix}{n}/report.pdf", size=3000 + n)],
            note=f"portal login password={PASSWORD}",
            portal={"user": "adjuster", "password": PASSWORD},
        )
        for n in range(count)
    }


@pytest.fixture
def on_session_azurite(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azurite]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    yield azurite
    reset_runtime()


def run(tmp_path: Path, lines: list[str | bytes]) -> tuple[dict[str, Any], str]:
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    )
    report_path = tmp_path / "report.json"
    name = f"h{uuid.uuid4().hex[:10]}"
    result = CliRunner().invoke(
        app, ["run", "--xact-events", str(events), "--run-name", name, "--report", str(report_path)]
    )
    assert result.exit_code == 0, result.output
    return json.loads(report_path.read_text()), result.output


def everything(connection_string: str) -> set[tuple[str, str]]:
    service = BlobServiceClient.from_connection_string(connection_string)
    return {
        (container.name, blob.name)
        for container in service.list_containers()
        for blob in service.get_container_client(container.name).list_blobs()
    }


def tables(report: dict[str, Any]) -> dict[str, pl.DataFrame]:
    options = report["storage_options"]
    return {
        name: read_delta(info["uri"], options)
        for name, info in report["tables"].items()
        if name.startswith("xact_") and info["rows"]
    }


def check_run(
    report: dict[str, Any], before: set[tuple[str, str]], expected_events: set[str], files: dict[str, bytes]
) -> dict[str, pl.DataFrame]:
    """What every hostile run must leave: rows and files of the good events, nothing outside the
    prefix, no secret in any Delta cell. ``files`` maps each source path to its bytes."""
    frames = tables(report)
    assert set(frames["xact_events"]["trace_id"].to_list()) == expected_events
    for frame in frames.values():
        for column in frame.columns:
            for cell in frame[column].cast(pl.String).to_list():
                for secret in SECRETS:
                    assert secret not in (cell or ""), (column, cell)
    where = report["files"]["xact"]
    connection = report["storage_connection_string"]
    container = BlobServiceClient.from_connection_string(connection).get_container_client(where["container"])
    after = everything(connection)
    for holder, name in after - before:
        # new blobs: the run's own state (named after its task hub) and its lake container, where
        # only the Delta tables and the attachments prefix are written
        if holder == where["container"]:
            assert name.startswith(("Tables/", where["prefix"])), name
        elif holder == "azure-webjobs-eventhub":  # the host's Event Hub checkpoint store
            assert "/checkpoint/" in name, name
        else:  # the run's task hub and state containers, and its entry among the runs
            assert report["run_name"] in f"{holder}/{name}", (holder, name)
    stored = {
        blob.name.removeprefix(where["prefix"]): container.download_blob(blob.name).readall()
        for blob in container.list_blobs(name_starts_with=where["prefix"])
    }
    attachments = frames["xact_attachments"]
    assert sorted(stored) == sorted(attachments["blob_path"].to_list())
    by_source = {
        urlsplit(row["attachment_url"]).path: stored[row["blob_path"]]
        for row in attachments.iter_rows(named=True)
    }
    assert by_source == files
    return frames


def test_the_issue_example_goes_through_claimsflow_run(on_session_azurite: Azurite, tmp_path: Path) -> None:
    goods = good_lines(20, "good")
    hostile = issue_lines(url)
    lines: list[str | bytes] = list(goods.values())
    lines[10:10] = list(hostile.values())
    before = everything(on_session_azurite.connection_string)
    report, output = run(tmp_path, lines)

    xact = report["events"]["xact"]
    assert xact == {"received": 27, "accepted": 24, "duplicates": 0, "skipped": 0, "invalid": 3}
    accepted_hostile = {"../../../../../other/evil", "hostile-photos", "hostile-bom", "hostile-malformed"}
    files = {
        f"/exports/good{n}/report.pdf": expected_bytes(f"/exports/good{n}/report.pdf", 3000 + n)
        for n in range(20)
    }
    files |= {
        path: expected_bytes(path, size)
        for path, size in (
            ("/h/evil.pdf", 4096),
            ("/inspection/photo.jpg", 3001),
            ("/claim/photo.jpg", 3002),
            ("/h/bom.pdf", 4096),
            ("/h/good.pdf", 4096),
        )
    }
    frames = check_run(report, before, set(goods) | accepted_hostile, files)

    attachments = frames["xact_attachments"]
    photos = attachments.filter(pl.col("trace_id") == "hostile-photos")["blob_path"].to_list()
    assert len(set(photos)) == 2 and all(p.endswith(".jpg") for p in photos)
    evil = attachments.filter(pl.col("trace_id") == "../../../../../other/evil")["blob_path"].to_list()
    assert len(evil) == 1 and ".." not in evil[0].split("/") and len(evil[0].split("/")) == 4
    failed = frames["xact_attachments_failed"]
    assert failed.select("trace_id", "status").rows() == [("hostile-malformed", "rejected")]
    assert "https://[" in failed["attachment_url"][0]
    letters = report["dead_letters"]
    assert letters == 3  # the three invalid bodies; the malformed URL is a rejected row, not a letter
    assert "XACT events received" in output


@pytest.mark.parametrize("hostile_class", list(issue_lines(url)))
def test_each_hostile_class_goes_through_claimsflow_run(
    on_session_azurite: Azurite, tmp_path: Path, hostile_class: str
) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}"
    goods = good_lines(2, prefix)
    line = issue_lines(url, prefix=prefix)[hostile_class]
    before = everything(on_session_azurite.connection_string)
    report, _ = run(tmp_path, [goods[f"{prefix}-0"], line, goods[f"{prefix}-1"]])

    xact = report["events"]["xact"]
    invalid = hostile_class in INVALID
    assert xact["received"] == 3 and xact["invalid"] == int(invalid) and xact["accepted"] == 3 - int(invalid)
    files = {
        f"/exports/{prefix}{n}/report.pdf": expected_bytes(f"/exports/{prefix}{n}/report.pdf", 3000 + n)
        for n in range(2)
    }
    expected_events = set(goods)
    if not invalid:
        event = json.loads(line.removeprefix(b"\xef\xbb\xbf") if isinstance(line, bytes) else line)
        expected_events.add(event["traceId"])
        for source in json.loads(event["data"])["attachments"]:
            if source.startswith("https://["):
                continue  # the malformed one: rejected
            path = urlsplit(source).path
            files[path] = expected_bytes(path, int(source.rsplit("size=", 1)[1]))
    check_run(report, before, expected_events, files)
