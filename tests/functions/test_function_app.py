"""The app indexes like the Functions host would see it: names, bindings, settings references."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

import function_app
from functions.lakehouse import LakehouseTimerError
from local_host.http_api import ManagementUrls
from local_host.indexing import app_functions
from shared.config import Settings
from shared.errors import ActivityError
from shared.health import check_readiness, register_readiness_check, remove_readiness_check
from shared.runtime import reset_runtime
from shared.storage import LakeLocation, StorageFactory


def functions_by_name() -> dict[str, Any]:
    """Indexed once per process (the SDK refuses a second ``get_functions`` on one app)."""
    return {f.get_function_name(): f for f in app_functions(function_app.app)}


def bindings(name: str) -> list[dict[str, Any]]:
    return json.loads(functions_by_name()[name].get_function_json())["bindings"]


@pytest.mark.unit
def test_every_concern_is_registered() -> None:
    assert set(functions_by_name()) == {
        "xact_ingest",
        "xact_event_orchestrator",
        "xact_attachment_orchestrator",
        "xact_enrich",
        "xact_transfer",
        "xact_record_attachment_failure",
        "xact_record_event_failure",
        "xact_dead_letter_in_blob",
        "claimx_ingest",
        "claimx_poll",
        "claimx_event_orchestrator",
        "claimx_media_orchestrator",
        "claimx_enrich",
        "claimx_download",
        "claimx_record_media_failure",
        "claimx_record_event_failure",
        "claimx_dead_letter_in_blob",
        "lakehouse_flush",
        "lakehouse_compact",
        "dedup_purge",
        "instance_purge",
        "health",
        "health_ready",
        "ops_replay",
        "ops_flush",
        "ops_compact",
    }


@pytest.mark.unit
def test_event_hub_trigger_reads_names_from_settings() -> None:
    trigger = next(b for b in bindings("xact_ingest") if b["type"] == "eventHubTrigger")
    assert trigger["cardinality"].lower() == "many"
    assert trigger["eventHubName"] == "%XACT_EVENTHUB_NAME%"
    assert trigger["consumerGroup"] == "%XACT_EVENTHUB_CONSUMER_GROUP%"
    assert trigger["connection"] == "EventHubConnection"
    assert any(b["type"] == "durableClient" for b in bindings("xact_ingest"))
    retry = functions_by_name()["xact_ingest"].get_settings_dict("retry_policy")
    assert retry["strategy"] == "exponential_backoff"
    assert retry["max_retry_count"] == "-1"  # a storage outage must never drop a batch


@pytest.mark.unit
def test_claimx_ingest_has_its_own_hub_and_consumer_group() -> None:
    trigger = next(b for b in bindings("claimx_ingest") if b["type"] == "eventHubTrigger")
    assert trigger["cardinality"].lower() == "many"
    assert trigger["eventHubName"] == "%CLAIMX_EVENTHUB_NAME%"
    assert trigger["consumerGroup"] == "%CLAIMX_EVENTHUB_CONSUMER_GROUP%"
    assert trigger["connection"] == "EventHubConnection"
    retry = functions_by_name()["claimx_ingest"].get_settings_dict("retry_policy")
    assert retry["max_retry_count"] == "-1"


@pytest.mark.unit
def test_timers_take_schedules_from_settings() -> None:
    assert bindings("lakehouse_flush")[0]["schedule"] == "%FLUSH_SCHEDULE%"
    assert bindings("lakehouse_compact")[0]["schedule"] == "%COMPACT_SCHEDULE%"


@pytest.mark.unit
def test_liveness_is_open_and_says_nothing_else() -> None:
    trigger = next(b for b in bindings("health") if b["type"] == "httpTrigger")
    assert trigger["authLevel"].upper() == "ANONYMOUS"
    response = functions_by_name()["health"].get_user_function()(
        func.HttpRequest("GET", "/api/health", body=b"")
    )
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"status": "alive"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "route"),
    [("ops_replay", "ops/deadletters/replay"), ("ops_flush", "ops/flush"), ("ops_compact", "ops/compact")],
)
def test_ops_routes_need_the_master_key(name: str, route: str) -> None:
    trigger = next(b for b in bindings(name) if b["type"] == "httpTrigger")
    assert trigger["authLevel"].upper() == "ADMIN"
    assert trigger["route"] == route
    assert [m.upper() for m in trigger["methods"]] == ["POST"]


@pytest.mark.unit
def test_readiness_needs_a_function_key() -> None:
    trigger = next(b for b in bindings("health_ready") if b["type"] == "httpTrigger")
    assert trigger["authLevel"].upper() == "FUNCTION"
    assert trigger["route"] == "health/ready"


@pytest.fixture
def app_settings(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    settings = make_settings()
    monkeypatch.setenv("AzureWebJobsStorage", settings.storage_connection_string or "")
    reset_runtime()
    yield settings
    reset_runtime()


@pytest.mark.azurite
def test_readiness_against_azurite(app_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_TABLES_URI", app_settings.lake_tables_uri)
    reset_runtime()
    ready = functions_by_name()["health_ready"].get_user_function()
    response = ready(func.HttpRequest("GET", "/api/health/ready", body=b""))
    assert response.status_code == 503  # the lake container does not exist yet
    assert json.loads(response.get_body())["reasons"] == ["delta_location_unreachable"]

    lake = LakeLocation.parse(app_settings.lake_tables_uri)
    StorageFactory(app_settings).lake_blob_service(lake).create_container(lake.container)
    response = ready(func.HttpRequest("GET", "/api/health/ready", body=b""))
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {
        "status": "ready",
        "checks": {
            "configuration": True,
            "state_tables": True,
            "state_blobs": True,
            "delta_location": True,
        },
        "reasons": [],
    }


@pytest.mark.azurite
def test_a_registered_check_joins_readiness(app_settings: Settings) -> None:
    lake = LakeLocation.parse(app_settings.lake_tables_uri)
    StorageFactory(app_settings).lake_blob_service(lake).create_container(lake.container)
    register_readiness_check("claimx_circuit", lambda settings: "claimx_circuit_open")
    try:
        report = check_readiness(app_settings)
    finally:
        remove_readiness_check("claimx_circuit")
    assert not report.ready
    assert report.reasons == ["claimx_circuit_open"]
    assert check_readiness(app_settings).ready


@pytest.mark.unit
def test_readiness_answers_503_when_storage_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    reset_runtime()
    try:
        response = functions_by_name()["health_ready"].get_user_function()(
            func.HttpRequest("GET", "/api/health/ready", body=b"")
        )
    finally:
        reset_runtime()
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert body["status"] == "not_ready"
    assert {"state_tables_unreachable", "state_blobs_unreachable"} <= set(body["reasons"])
    assert "a2V5" not in response.get_body().decode()


@pytest.mark.azurite
def test_flush_timer_fails_loudly_when_a_table_cannot_be_written(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One table failing does not hide: the invocation fails (after the other tables were done)."""
    settings = make_settings(LAKE_TABLES_URI="abfss://lake@nosuchaccount.dfs.core.windows.net/Tables")
    for key, value in {
        "AzureWebJobsStorage": settings.storage_connection_string or "",
        "TASKHUB_NAME": settings.taskhub_name,
        "LAKE_TABLES_URI": settings.lake_tables_uri,
    }.items():
        monkeypatch.setenv(key, value)
    reset_runtime()
    try:
        from shared.runtime import get_runtime
        from shared.xact.tables import XACT_ATTACHMENTS_FAILED

        get_runtime().staging.stage_many(
            XACT_ATTACHMENTS_FAILED, [{"media_id": "m-1", "trace_id": "t", "status": "rejected"}]
        )
        flush = functions_by_name()["lakehouse_flush"].get_user_function()
        with pytest.raises(LakehouseTimerError, match="xact_attachments_failed"):
            flush(None)
        assert get_runtime().staging.count(XACT_ATTACHMENTS_FAILED) == 1  # nothing lost
    finally:
        reset_runtime()


# The durable client input as the host passes it; the batch fails before it is used.
CLIENT = json.dumps(
    ManagementUrls("http://127.0.0.1:9/runtime/webhooks/durabletask", "hub", "Storage", "key").client_binding(
        "http://127.0.0.1:9/durabletask/"
    )
)
XACT_BODY = b'{"traceId": "t-1", "type": "verisk.claims.property.xn.documentsReceived", "data": "{}"}'
CLAIMX_BODY = b'{"eventType": "PROJECT_CREATED", "projectId": 1, "ingestedAt": "2026-11-23T08:30:00Z"}'


@pytest.mark.unit
@pytest.mark.parametrize(("name", "body"), [("xact_ingest", XACT_BODY), ("claimx_ingest", CLAIMX_BODY)])
def test_an_ingest_that_storage_fails_raises_a_redacted_error(
    name: str, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host keeps a failed batch's error text, so both ingests raise it through the redaction."""
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    event = func.EventHubEvent(body=body, enqueued_time=datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    reset_runtime()
    try:
        with pytest.raises(ActivityError) as caught:
            asyncio.run(functions_by_name()[name].get_user_function()(events=[event], client=CLIENT))
    finally:
        reset_runtime()
    assert "a2V5" not in str(caught.value)
