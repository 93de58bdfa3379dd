from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.xact.events import SKIP_NO_ASSIGNMENT, InvalidBody, XactEvent, parse_xact_body
from shared.xact.rows import event_row

pytestmark = pytest.mark.unit

TRACE = "3f2b9c1e-7a44-4d0b-9e61-2c5d8a9b1f00"
URL = (
    "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/exports/A1B2C3/estimate.pdf"
    "?X-Amz-Date=20260214T150405Z&X-Amz-Expires=604800&X-Amz-Signature=abc"
)
DATA: dict[str, Any] = {
    "assignmentId": "A1B2C3",
    "carrierId": "CARR01",
    "description": "Photos uploaded",
    "dateTime": "2026-02-14 08:04:05 MDT",
    "adm": {"coverageLoss": {"claimNumber": "CLM-2026-0042"}},
    "contact": {
        "type": "Insured",
        "name": "Pat Doe",
        "contactMethods": {
            "email": {"address": "pat@example.com"},
            "phone": {"type": "Mobile", "number": "5550100", "extension": ""},
        },
    },
    "attachments": [URL, "", 7, None, "https://x.example.com/b.jpg"],
}


def body(**overrides: Any) -> str:
    event: dict[str, Any] = {
        "type": "verisk.claims.property.xn.documentsReceived",
        "version": 1,
        "utcDateTime": "2026-02-14T15:04:05Z",
        "traceId": TRACE,
        "data": json.dumps(DATA),
    }
    event.update(overrides)
    return json.dumps({k: v for k, v in event.items() if v is not ...})


def test_reference_event_parses_with_derived_fields() -> None:
    event = parse_xact_body(body().encode())
    assert isinstance(event, XactEvent)
    assert event.event_id == "28706bf1-1a96-511d-a54f-5fb42e9ea3be"
    assert event.status_subtype == "documentsReceived"
    assert event.version == "1"
    assert event.occurred_at == datetime(2026, 2, 14, 15, 4, 5, tzinfo=UTC)
    assert event.attachments == (URL, "https://x.example.com/b.jpg")
    assert event.skip_reason is None


def test_data_as_object_and_snake_case_trace_id() -> None:
    event = parse_xact_body(body(data=DATA, traceId=..., trace_id=TRACE))
    assert isinstance(event, XactEvent)
    assert event.trace_id == TRACE
    assert event.assignment_id == "A1B2C3"


def test_missing_assignment_is_skipped_not_invalid() -> None:
    event = parse_xact_body(body(data={"attachments": [URL]}))
    assert isinstance(event, XactEvent)
    assert event.skip_reason == SKIP_NO_ASSIGNMENT


def test_non_list_attachments_mean_none() -> None:
    event = parse_xact_body(body(data={"assignmentId": "A", "attachments": "https://x/y.pdf"}))
    assert isinstance(event, XactEvent)
    assert event.attachments == ()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ("42", "not a JSON object"),
        (body(traceId="  "), "traceId"),
        (body(traceId=...), "traceId"),
        (body(type=""), "type"),
        (body(utcDateTime="yesterday"), "utcDateTime"),
        (body(data="{broken"), "data"),
        (body(data="[1]"), "data"),
    ],
)
def test_invalid_bodies_keep_the_raw_text(raw: str, reason: str) -> None:
    parsed = parse_xact_body(raw)
    assert isinstance(parsed, InvalidBody)
    assert parsed.raw == raw
    assert reason in parsed.reason


def test_oversized_body_is_invalid_not_a_poison_message() -> None:
    raw = body(data={"assignmentId": "A", "note": "x" * 400_000})
    parsed = parse_xact_body(raw)
    assert isinstance(parsed, InvalidBody)
    assert "exceeds" in parsed.reason


def test_event_row_columns() -> None:
    event = parse_xact_body(body())
    assert isinstance(event, XactEvent)
    created = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    row = event_row(event, created_at=created)
    assert row["trace_id"] == TRACE
    assert row["event_id"] == "28706bf1-1a96-511d-a54f-5fb42e9ea3be"
    assert row["ingested_at"] == event.occurred_at
    assert row["event_date"].isoformat() == "2026-02-14"
    assert row["claim_number"] == "CLM-2026-0042"
    assert row["contact_email_address"] == "pat@example.com"
    assert row["contact_phone_type"] == "Mobile"
    assert row["contact_phone_extension"] is None
    assert row["event_datetime_mdt"] == "2026-02-14 08:04:05 MDT"
    assert row["attachments"] == f"{URL},https://x.example.com/b.jpg"
    assert row["raw_json"] == event.raw
    assert row["created_date"].isoformat() == "2026-03-01"
