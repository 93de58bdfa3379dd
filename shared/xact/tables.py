"""The XACT lakehouse tables: ``xact_events`` (every valid event), ``xact_attachments`` (every
uploaded file) and ``xact_attachments_failed`` (rejected, permanently failed or exhausted
attachments). Columns and keys are described in docs/architecture.md."""

from __future__ import annotations

import polars as pl

from shared.lake.tables import DATE, INT32, INT64, STRING, UTC_TS, TableSpec, WriteMode

XACT_EVENTS = TableSpec(
    name="xact_events",
    schema=pl.Schema(
        {
            "type": STRING,
            "status_subtype": STRING,
            "version": STRING,
            "ingested_at": UTC_TS,
            "event_date": DATE,
            "trace_id": STRING,
            "event_id": STRING,
            "description": STRING,
            "assignment_id": STRING,
            "original_assignment_id": STRING,
            "xn_address": STRING,
            "carrier_id": STRING,
            "estimate_version": STRING,
            "note": STRING,
            "author": STRING,
            "sender_reviewer_name": STRING,
            "sender_reviewer_email": STRING,
            "carrier_reviewer_name": STRING,
            "carrier_reviewer_email": STRING,
            "event_datetime_mdt": STRING,
            "attachments": STRING,
            "claim_number": STRING,
            "contact_type": STRING,
            "contact_name": STRING,
            "contact_phone_type": STRING,
            "contact_phone_number": STRING,
            "contact_phone_extension": STRING,
            "contact_email_address": STRING,
            "raw_json": STRING,
            "created_at": UTC_TS,
            "created_date": DATE,
        }
    ),
    key=("trace_id",),
    partition="event_date",
    mode=WriteMode.INSERT_ONLY,
    large_text=frozenset({"raw_json", "description", "note", "attachments"}),
)

XACT_ATTACHMENTS = TableSpec(
    name="xact_attachments",
    schema=pl.Schema(
        {
            "media_id": STRING,
            "trace_id": STRING,
            "attachment_url": STRING,
            "blob_path": STRING,
            "file_type": STRING,
            "status_subtype": STRING,
            "assignment_id": STRING,
            "bytes_downloaded": INT64,
            "content_type": STRING,
            "sha256": STRING,
            "downloaded_at": UTC_TS,
            "event_date": DATE,
            "created_at": UTC_TS,
        }
    ),
    key=("media_id",),
    partition="event_date",
    mode=WriteMode.INSERT_ONLY,
    large_text=frozenset({"attachment_url", "blob_path"}),
)

XACT_ATTACHMENTS_FAILED = TableSpec(
    name="xact_attachments_failed",
    schema=pl.Schema(
        {
            "media_id": STRING,
            "trace_id": STRING,
            "attachment_url": STRING,
            "status": STRING,  # rejected | failed_permanent | exhausted
            "error_category": STRING,
            "error_message": STRING,
            "http_status": INT32,
            "retry_count": INT32,
            "failed_at": UTC_TS,
            "created_at": UTC_TS,
        }
    ),
    key=("media_id",),
    partition=None,
    mode=WriteMode.UPSERT,
    large_text=frozenset({"attachment_url", "error_message"}),
)

XACT_TABLES: tuple[TableSpec, ...] = (XACT_EVENTS, XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED)
