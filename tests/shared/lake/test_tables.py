from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum

import polars as pl
import pytest

from shared.lake.tables import (
    XACT_ATTACHMENTS,
    XACT_ATTACHMENTS_FAILED,
    XACT_EVENTS,
    TableSpec,
    WriteMode,
    all_specs,
    coerce_row,
    combine_rows,
    get_spec,
    register,
    rows_to_frame,
)

pytestmark = pytest.mark.unit

UTC_US = pl.Datetime("us", "UTC")


def test_xact_events_schema_matches_the_seed_order() -> None:
    expected = [
        "type",
        "status_subtype",
        "version",
        "ingested_at",
        "event_date",
        "trace_id",
        "event_id",
        "description",
        "assignment_id",
        "original_assignment_id",
        "xn_address",
        "carrier_id",
        "estimate_version",
        "note",
        "author",
        "sender_reviewer_name",
        "sender_reviewer_email",
        "carrier_reviewer_name",
        "carrier_reviewer_email",
        "event_datetime_mdt",
        "attachments",
        "claim_number",
        "contact_type",
        "contact_name",
        "contact_phone_type",
        "contact_phone_number",
        "contact_phone_extension",
        "contact_email_address",
        "raw_json",
        "created_at",
        "created_date",
    ]
    assert XACT_EVENTS.columns == expected
    assert XACT_EVENTS.schema["ingested_at"] == UTC_US
    assert XACT_EVENTS.schema["created_at"] == UTC_US
    assert XACT_EVENTS.schema["event_date"] == pl.Date
    assert XACT_EVENTS.schema["created_date"] == pl.Date
    others = set(expected) - {"ingested_at", "created_at", "event_date", "created_date"}
    assert all(XACT_EVENTS.schema[c] == pl.String for c in others)
    assert (XACT_EVENTS.key, XACT_EVENTS.partition, XACT_EVENTS.mode) == (
        ("trace_id",),
        "event_date",
        WriteMode.INSERT_ONLY,
    )


def test_xact_attachment_tables() -> None:
    assert XACT_ATTACHMENTS.columns == [
        "media_id",
        "trace_id",
        "attachment_url",
        "blob_path",
        "file_type",
        "status_subtype",
        "assignment_id",
        "bytes_downloaded",
        "content_type",
        "sha256",
        "downloaded_at",
        "event_date",
        "created_at",
    ]
    assert XACT_ATTACHMENTS.schema["bytes_downloaded"] == pl.Int64
    assert (XACT_ATTACHMENTS.key, XACT_ATTACHMENTS.partition) == (("media_id",), "event_date")
    assert XACT_ATTACHMENTS_FAILED.columns == [
        "media_id",
        "trace_id",
        "attachment_url",
        "status",
        "error_category",
        "error_message",
        "http_status",
        "retry_count",
        "failed_at",
        "created_at",
    ]
    assert XACT_ATTACHMENTS_FAILED.schema["http_status"] == pl.Int32
    assert XACT_ATTACHMENTS_FAILED.schema["retry_count"] == pl.Int32
    assert XACT_ATTACHMENTS_FAILED.partition is None
    assert XACT_ATTACHMENTS_FAILED.mode is WriteMode.UPSERT
    assert {s.name for s in all_specs()} >= {"xact_events", "xact_attachments", "xact_attachments_failed"}
    assert get_spec("xact_events") is XACT_EVENTS


def test_rows_to_frame_has_the_exact_schema_and_nulls_for_missing_columns() -> None:
    mountain = timezone(timedelta(hours=-7))
    frame = rows_to_frame(
        XACT_ATTACHMENTS,
        [
            {
                "media_id": "m1",
                "event_date": date(2026, 1, 2),
                "bytes_downloaded": 2**40,
                "downloaded_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=mountain),
            }
        ],
    )
    assert frame.schema == XACT_ATTACHMENTS.schema
    row = frame.row(0, named=True)
    assert row["bytes_downloaded"] == 2**40
    assert row["downloaded_at"] == datetime(2026, 1, 2, 10, 4, 5, 6, tzinfo=UTC)
    assert row["sha256"] is None
    assert rows_to_frame(XACT_EVENTS, []).schema == XACT_EVENTS.schema


def test_coerce_checks_types_and_required_columns() -> None:
    row = coerce_row(
        XACT_EVENTS,
        {
            "trace_id": "t",
            "event_date": "2026-01-02",
            "ingested_at": datetime(2026, 1, 2, 3, 0),  # naive: taken as UTC
        },
    )
    assert row["event_date"] == date(2026, 1, 2)
    assert row["ingested_at"] == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)

    class Status(StrEnum):
        EXHAUSTED = "exhausted"

    failed = coerce_row(XACT_ATTACHMENTS_FAILED, {"media_id": "m", "status": Status.EXHAUSTED})
    assert type(failed["status"]) is str and failed["status"] == "exhausted"
    with pytest.raises(ValueError, match="unknown columns"):
        coerce_row(XACT_EVENTS, {"trace_id": "t", "event_date": date(2026, 1, 1), "nope": 1})
    with pytest.raises(ValueError, match="required"):
        coerce_row(XACT_EVENTS, {"trace_id": "t"})  # a null partition would defeat the MERGE match
    with pytest.raises(ValueError, match="null"):
        coerce_row(XACT_EVENTS, {"trace_id": None, "event_date": date(2026, 1, 1)})
    with pytest.raises(ValueError, match="does not fit"):
        coerce_row(XACT_ATTACHMENTS_FAILED, {"media_id": "m", "http_status": 2**31})
    with pytest.raises(TypeError):
        coerce_row(XACT_ATTACHMENTS_FAILED, {"media_id": "m", "retry_count": True})


def test_combine_rows_later_non_null_values_win() -> None:
    rows = combine_rows(
        XACT_ATTACHMENTS_FAILED,
        [
            {"media_id": "a", "status": "failed_permanent", "error_message": "404"},
            {"media_id": "b", "status": "rejected"},
            {"media_id": "a", "status": "exhausted", "error_message": None},
        ],
    )
    assert rows == [
        {"media_id": "a", "status": "exhausted", "error_message": "404"},
        {"media_id": "b", "status": "rejected"},
    ]


def test_compound_keys_and_registry_conflicts() -> None:
    spec = TableSpec(
        name="test_compound",
        schema=pl.Schema({"a": pl.String(), "b": pl.String(), "v": pl.Int64()}),
        key=("a", "b"),
        mode=WriteMode.UPSERT,
    )
    assert spec.key_of({"a": "x|y", "b": "z"}) != spec.key_of({"a": "x", "b": "y|z"})
    assert register(spec) is spec
    register(replace(spec))  # the same spec again is fine
    assert get_spec("test_compound") == spec
    with pytest.raises(ValueError, match="already registered"):
        register(replace(spec, key=("a",)))
    with pytest.raises(ValueError):
        TableSpec(name="Bad-Name", schema=pl.Schema({"a": pl.String()}), key=("a",))
    with pytest.raises(ValueError):
        TableSpec(name="bad", schema=pl.Schema({"a": pl.String()}), key=("missing",))
