"""The XACT table specs: columns in order, types, keys, partitions, write modes."""

from __future__ import annotations

import polars as pl
import pytest

from shared.lake.tables import WriteMode
from shared.runtime import LAKE_TABLES
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

pytestmark = pytest.mark.unit

UTC_US = pl.Datetime("us", "UTC")


def test_xact_events_columns_in_order() -> None:
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
    assert LAKE_TABLES.names[:3] == ["xact_events", "xact_attachments", "xact_attachments_failed"]
    assert LAKE_TABLES.spec("xact_events") is XACT_EVENTS
