"""XACT activity bodies against Azurite: enrich (plugins, URL checks, rejected rows) and the
final attachment record (rows and dead letters, idempotent under replay)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from claimsflow.azurite import Azurite, free_port
from claimsflow.simulator import AttachmentSimulator, expected_bytes
from shared.config import Settings
from shared.domains import Domain
from shared.errors import ErrorCategory, Failure
from shared.ids import media_id
from shared.plugins.context import PluginContext, Stage
from shared.plugins.registry import PluginResult
from shared.retry import ok
from shared.runtime import Runtime
from shared.state.deadletter import DeadLetterStatus
from shared.storage import LakeLocation
from shared.xact import activities
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED

pytestmark = pytest.mark.azurite

S3 = "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/exports/A1"
EVENT = {
    "trace_id": "t-9",
    "event_id": "e-9",
    "status_subtype": "estimatePackageReceived",
    "assignment_id": "A1",
    "estimate_version": "3",
    "attachments": [
        f"{S3}/est.pdf?X-Amz-Signature=one",
        f"{S3}/est.pdf?X-Amz-Signature=two",  # the same file, re-signed
        f"{S3}/photo.jpg",
        "https://10.0.0.7/exports/a.pdf",
        f"{S3}/macro.exe",
        "http://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/x.pdf",
    ],
    "event_date": "2026-11-22",
    "occurred_at": "2026-11-22T15:04:05+00:00",
    "retry_delays": [300, 600, 1200, 2400],
}


@dataclass
class ScriptedPlugin:
    name: str
    priority: int
    terminate: bool = False
    explode: bool = False
    domains: frozenset[Domain] = frozenset({Domain.XACT})
    stages: frozenset[Stage] = frozenset({Stage.ENRICHMENT_COMPLETE})
    event_types: frozenset[str] = frozenset()

    def execute(self, context: PluginContext) -> PluginResult:
        if self.explode:
            raise RuntimeError("plugin bug")
        assert context.data["attachment_count"] == 6
        return PluginResult(
            self.name, terminate=self.terminate, reason="not for us" if self.terminate else None
        )


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


def test_enrich_builds_tasks_and_rejects_bad_urls(runtime: Runtime) -> None:
    runtime.plugins.register(ScriptedPlugin("broken", priority=10, explode=True))
    outcome = activities.enrich(EVENT, runtime)
    assert outcome["ok"]
    downloads = outcome["value"]["downloads"]
    assert [d["blob_path"] for d in downloads] == [
        "estimatePackageReceived/A1/t-9/A1_3_est.pdf",
        "estimatePackageReceived/A1/t-9/A1_3_photo.jpg",
    ]
    assert downloads[0]["media_id"] == media_id("t-9", f"{S3}/est.pdf")
    assert outcome["value"]["rejected"] == 3
    rejected = runtime.staging.read(XACT_ATTACHMENTS_FAILED, limit=10)
    assert {row.values["status"] for row in rejected} == {"rejected"}
    assert {row.values["attachment_url"] for row in rejected} == {
        "https://10.0.0.7/exports/a.pdf",
        f"{S3}/macro.exe",
        "http://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/x.pdf",
    }


def test_terminating_plugin_stops_downloads(runtime: Runtime) -> None:
    runtime.plugins.register(ScriptedPlugin("gate", priority=5, terminate=True))
    runtime.plugins.register(ScriptedPlugin("never-runs", priority=50, explode=True))
    outcome = activities.enrich(EVENT, runtime)
    assert outcome["value"] == {"downloads": [], "rejected": 0, "terminated": True, "reason": "not for us"}
    assert runtime.staging.count(XACT_ATTACHMENTS_FAILED) == 0


def failure_record(task: dict[str, object]) -> dict[str, object]:
    failure = Failure.of(ErrorCategory.TRANSIENT, "503 from https://h/x?X-Amz-Signature=S", 503)
    return {
        "kind": "attachment",
        "task": task,
        "failure": failure.to_dict(),
        "retry_count": 4,
        "exhausted": True,
        "instance_id": "xact-e-9:m",
    }


def test_record_attachment_failure_is_idempotent_under_replay(runtime: Runtime) -> None:
    task = activities.download_task(EVENT, EVENT["attachments"][2])  # type: ignore[index]
    payload = {"record": failure_record(task), "retry_count": 0}
    assert activities.record_attachment_failure(payload, runtime) == ok("exhausted")
    assert activities.record_attachment_failure(payload, runtime) == ok("exhausted")  # ran twice
    [row] = runtime.staging.read(XACT_ATTACHMENTS_FAILED, limit=10)
    assert (row.values["status"], row.values["retry_count"], row.values["http_status"]) == (
        "exhausted",
        4,
        503,
    )
    [letter] = runtime.dead_letters.list()
    assert (letter.reason.value, letter.retry_count, letter.instance_id) == ("exhausted", 4, "xact-e-9:m")
    assert letter.payload == task
    assert "X-Amz-Signature=S" not in letter.error


def test_the_blob_fallback_keeps_a_dead_letter_that_list_get_and_status_changes_see(runtime: Runtime) -> None:
    task = activities.download_task(EVENT, EVENT["attachments"][2])  # type: ignore[index]
    because = Failure.of(ErrorCategory.TRANSIENT, "Connection refused").to_dict()
    record = {**failure_record(task), "unrecorded_because": because}
    assert activities.dead_letter_in_blob({"record": record, "retry_count": 0}, runtime) == ok()
    letter_id = f"xact_transfer:{task['media_id']}"
    [letter] = runtime.dead_letters.list()
    assert letter.id == letter_id and letter.payload == task
    assert "not recorded in the tables: Connection refused" in letter.error
    assert runtime.dead_letters.get(letter_id) == letter
    runtime.dead_letters.set_status(letter_id, DeadLetterStatus.RESOLVED)  # moves it into the table
    [moved] = runtime.dead_letters.list()
    assert moved.status is DeadLetterStatus.RESOLVED and moved.payload == task
    assert runtime.dead_letters.list(status=DeadLetterStatus.OPEN) == []


async def test_transfer_stages_its_row_once_and_a_staging_failure_is_retried(
    make_runtime: Callable[..., Runtime], make_settings: Callable[..., Settings], azurite: Azurite
) -> None:
    """The file is copied and its row staged in one activity. With the Table service refusing
    connections the copy still lands and the outcome is a transient failure; the retry (a
    healthy process) finds the file committed and stages the row, once, without a signature."""
    async with AttachmentSimulator() as simulator:
        settings = make_settings(
            SIMULATION_MODE="true", SIMULATOR_URL=simulator.url, TRANSFER_BLOCK_SIZE_MB="1"
        )
        closed = f"TableEndpoint=http://127.0.0.1:{free_port()}/x"
        tables_down = re.sub(r"TableEndpoint=[^;]+", closed, azurite.connection_string)
        broken = make_runtime(settings.model_copy(update={"storage_connection_string": tables_down}))
        healthy = make_runtime(settings)
        files = LakeLocation.parse(settings.xact_attachments_uri)
        healthy.storage.lake_blob_service(files).create_container(files.container)
        url = f"{S3}/photo.jpg?X-Amz-Signature=secret&size=3000"
        task = {**activities.download_task(EVENT, url), "retry_count": 0}

        first = await activities.transfer(task, broken)
        assert not first["ok"] and first["failure"]["category"] == "transient", first
        retried = await activities.transfer({**task, "retry_count": 1}, healthy)
        replayed = await activities.transfer({**task, "retry_count": 1}, healthy)  # the activity ran twice
        await broken.aclose()
        await healthy.aclose()
    assert retried["ok"] and retried["value"]["already_present"] and replayed["ok"]
    [row] = healthy.staging.read(XACT_ATTACHMENTS, limit=10)
    assert row.values["attachment_url"] == f"{S3}/photo.jpg"  # no signature stored
    assert row.values["bytes_downloaded"] == 3000
    assert row.values["sha256"] == hashlib.sha256(expected_bytes("/exports/A1/photo.jpg", 3000)).hexdigest()
    assert row.values["event_date"].isoformat() == "2026-11-22"
    assert healthy.dead_letters.list() == []


HOSTILE_EVENT = {
    **EVENT,
    "trace_id": "../../../../../other/evil",
    "status_subtype": "documentsReceived",
    "attachments": [
        f"{S3}/inspection/photo.jpg?X-Amz-Signature=a",
        f"{S3}/claim/photo.jpg?X-Amz-Signature=b",
        "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com:99999999/bad.pdf",
        "https://[usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/broken.pdf",
        "https://alice:pw123@usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/a.pdf",
        f"{S3}/report.pdf",
    ],
}


def test_enrich_gives_safe_distinct_paths_and_rejects_only_the_bad_urls(runtime: Runtime) -> None:
    outcome = activities.enrich(HOSTILE_EVENT, runtime)
    downloads = outcome["value"]["downloads"]
    paths = [d["blob_path"] for d in downloads]
    assert len(paths) == 3 and len(set(paths)) == 3
    for path in paths:
        segments = path.split("/")
        assert len(segments) == 4 and ".." not in segments and all(segments)
        assert segments[2].endswith(f"-{hashlib.sha256(HOSTILE_EVENT['trace_id'].encode()).hexdigest()[:8]}")
    photos = sorted(p.rsplit("/", 1)[1] for p in paths if "photo" in p)
    medias = sorted(d["media_id"][:8] for d in downloads if "photo" in d["blob_path"])
    assert photos == sorted(f"A1_photo-{m}.jpg" for m in medias)  # each colliding name gets its media id
    assert outcome["value"]["rejected"] == 3
    rejected = {
        row.values["attachment_url"]: row.values for row in runtime.staging.read(XACT_ATTACHMENTS_FAILED, 10)
    }
    assert set(rejected) == {
        "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com:99999999/bad.pdf",
        "https://[usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/broken.pdf",
        "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/a.pdf",  # no user info
    }
    assert all("pw123" not in str(values) and "alice" not in str(values) for values in rejected.values())
    # the same event gives the same paths, whatever the order of its attachments
    again = activities.enrich({**HOSTILE_EVENT, "attachments": HOSTILE_EVENT["attachments"][::-1]}, runtime)
    assert sorted(d["blob_path"] for d in again["value"]["downloads"]) == sorted(paths)


def test_an_id_that_cannot_be_a_path_rejects_each_attachment_saying_why(runtime: Runtime) -> None:
    outcome = activities.enrich({**EVENT, "trace_id": "..", "attachments": [f"{S3}/a.pdf"]}, runtime)
    assert outcome["value"] == {"downloads": [], "rejected": 1, "terminated": False}
    [row] = runtime.staging.read(XACT_ATTACHMENTS_FAILED, limit=10)
    assert row.values["status"] == "rejected"
    assert "no safe file path: trace id '..' leaves no usable path segment" in row.values["error_message"]
