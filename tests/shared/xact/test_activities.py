"""XACT activity bodies against Azurite: enrich (plugins, URL checks, rejected rows) and the
final attachment record (rows and dead letters, idempotent under replay)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from shared.domains import Domain
from shared.errors import ErrorCategory, Failure
from shared.ids import media_id
from shared.plugins.context import PluginContext, Stage
from shared.plugins.registry import PluginResult
from shared.retry import failed, ok
from shared.runtime import Runtime
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


def test_record_attachment_is_idempotent_under_replay(runtime: Runtime) -> None:
    task = activities.download_task(EVENT, EVENT["attachments"][2])  # type: ignore[index]
    record = {
        "task": task,
        "outcome": failed(Failure.of(ErrorCategory.TRANSIENT, "503 from https://h/x?X-Amz-Signature=S", 503)),
        "retry_count": 4,
        "exhausted": True,
        "instance_id": "xact-e-9:m",
    }
    assert activities.record_attachment(record, runtime) == "exhausted"
    assert activities.record_attachment(record, runtime) == "exhausted"  # the activity ran twice
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


def test_record_success_stages_the_inventory_row(runtime: Runtime) -> None:
    task = activities.download_task(EVENT, EVENT["attachments"][0])  # type: ignore[index]
    value = {"bytes": 1234, "content_type": "application/pdf", "sha256": "ab" * 32}
    assert activities.record_attachment({"task": task, "outcome": ok(value), "retry_count": 1}, runtime) == (
        "uploaded"
    )
    [row] = runtime.staging.read(XACT_ATTACHMENTS, limit=10)
    assert row.values["attachment_url"] == f"{S3}/est.pdf"  # no signature stored
    assert row.values["bytes_downloaded"] == 1234
    assert row.values["event_date"].isoformat() == "2026-11-22"
    assert runtime.dead_letters.list() == []
