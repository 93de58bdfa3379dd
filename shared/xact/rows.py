"""Rows for the XACT Delta tables (docs/architecture.md, section 8), built from validated events
and outcomes. No secret reaches a row: ``raw_json`` and ``attachments`` keep every URL with its
signature values replaced by ``REDACTED`` (docs/architecture.md, section 4)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from shared.redact import redact_json_text, redact_text, redact_url
from shared.xact.events import XactEvent, text_of

_DATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("description", "description"),
    ("assignment_id", "assignmentId"),
    ("original_assignment_id", "originalAssignmentId"),
    ("xn_address", "xnAddress"),
    ("carrier_id", "carrierId"),
    ("estimate_version", "estimateVersion"),
    ("note", "note"),
    ("author", "author"),
    ("sender_reviewer_name", "senderReviewerName"),
    ("sender_reviewer_email", "senderReviewerEmail"),
    ("carrier_reviewer_name", "carrierReviewerName"),
    ("carrier_reviewer_email", "carrierReviewerEmail"),
    ("event_datetime_mdt", "dateTime"),
)
_NESTED_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("claim_number", ("adm", "coverageLoss", "claimNumber")),
    ("contact_type", ("contact", "type")),
    ("contact_name", ("contact", "name")),
    ("contact_phone_type", ("contact", "contactMethods", "phone", "type")),
    ("contact_phone_number", ("contact", "contactMethods", "phone", "number")),
    ("contact_phone_extension", ("contact", "contactMethods", "phone", "extension")),
    ("contact_email_address", ("contact", "contactMethods", "email", "address")),
)


def event_row(event: XactEvent, *, created_at: datetime, event_date: date | None = None) -> dict[str, Any]:
    """The ``xact_events`` row: every valid event, including those skipped downstream.
    ``event_date`` (the partition) is the one fixed when the event was first seen, if given."""
    row: dict[str, Any] = {
        "type": event.type,
        "status_subtype": event.status_subtype,
        "version": event.version,
        "ingested_at": event.occurred_at,
        "event_date": event_date or event.event_date,
        "trace_id": event.trace_id,
        "event_id": event.event_id,
    }
    for column, key in _DATA_COLUMNS:
        row[column] = redact_text_value(event.data.get(key))
    row["attachments"] = ",".join(redact_url(url) for url in event.attachments) or None
    for column, path in _NESTED_COLUMNS:
        row[column] = redact_text_value(_dig(event.data, path))
    row["raw_json"] = redact_json_text(event.raw)
    row["created_at"] = created_at
    row["created_date"] = created_at.date()
    return row


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def redact_text_value(value: Any) -> str | None:
    """A data field as column text, secrets (a URL in a note, a password) replaced."""
    text = text_of(value)
    return None if text is None else redact_text(text)
