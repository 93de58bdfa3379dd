from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.lake.staging import StagingTable, UnstageableRow
from shared.pool import IoPool
from shared.xact.events import (
    MAX_BODY_BYTES,
    MAX_TRACE_ID_CHARS,
    SKIP_NO_ASSIGNMENT,
    InvalidBody,
    XactEvent,
    parse_xact_body,
)
from shared.xact.rows import event_row
from shared.xact.tables import XACT_EVENTS

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
    raw = body(data={"assignmentId": "A", "note": "x" * MAX_BODY_BYTES})
    parsed = parse_xact_body(raw)
    assert isinstance(parsed, InvalidBody)
    assert "exceeds" in parsed.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # each of these escaped the parser before (OverflowError, RecursionError, ValueError)
        (body(utcDateTime="9999-12-31T23:00:00-23:00"), "out of range once converted to UTC"),
        (body(utcDateTime="0001-01-01T00:30:00+14:00"), "out of range once converted to UTC"),
        (body(utcDateTime="1600-12-31T23:59:59Z"), "outside 1601-01-01"),
        (body(data="[" * 100_000), "nested deeper than"),
        (body(data='{"a": ' + "[" * 40 + "]" * 40 + "}"), "nested deeper than"),
        (body(deep=json.loads("[" * 40 + "]" * 40)), "nested deeper than"),
        (body(data={"x": json.loads("[" * 150 + "]" * 150)}), "nested deeper than"),
        (body().replace('"version": 1', '"version": ' + "9" * 5000), "not valid JSON"),
        (body(data='{"assignmentId": "A", "n": ' + "9" * 5000 + "}"), "data"),
        (body(traceId="t" * (MAX_TRACE_ID_CHARS + 1)), "traceId"),
    ],
)
def test_hostile_bodies_are_invalid_never_raised(raw: str, reason: str) -> None:
    parsed = parse_xact_body(raw)
    assert isinstance(parsed, InvalidBody)
    assert reason in parsed.reason
    assert parsed.raw == raw


def test_a_utf8_bom_before_a_valid_body_is_accepted() -> None:
    raw = body()
    for with_bom in (b"\xef\xbb\xbf" + raw.encode(), "\ufeff" + raw):
        event = parse_xact_body(with_bom)
        assert isinstance(event, XactEvent)
        assert event.raw == raw  # the BOM is not part of the event


def test_bodies_that_are_not_unicode_are_invalid_and_keep_their_bytes_as_escapes() -> None:
    parsed = parse_xact_body(b'{"type": "caf\xe9"}')
    assert isinstance(parsed, InvalidBody)
    assert parsed.reason == "not UTF-8 (byte 0xe9 at offset 13)"
    assert parsed.raw == '{"type": "caf\\xe9"}'
    lone = parse_xact_body('{"type": "\ud800"}')
    assert isinstance(lone, InvalidBody)
    assert "lone surrogate" in lone.reason
    lone.raw.encode("utf-8")  # storable


def test_a_lone_surrogate_spelled_in_data_is_refused_when_its_row_is_encoded(io_pool: IoPool) -> None:
    """JSON may spell a lone surrogate (\\ud800) that no UTF-8 store takes; the row encoder, which
    decides what staging (and Delta after it) can hold, refuses it, and ingest counts the body
    invalid."""
    event = parse_xact_body(body(data='{"assignmentId": "A", "note": "x\\ud800y"}'))
    assert isinstance(event, XactEvent)
    offline = StagingTable(
        TableServiceClient.from_connection_string("UseDevelopmentStorage=true"), io_pool, "x"
    )
    with pytest.raises(UnstageableRow, match="lone UTF-16 surrogate"):
        offline.encode(XACT_EVENTS, event_row(event, created_at=datetime(2026, 3, 1, tzinfo=UTC)))


def test_surrogate_pairs_are_unicode() -> None:
    event = parse_xact_body(body(data='{"assignmentId": "A", "note": "\\ud83d\\ude00"}'))
    assert isinstance(event, XactEvent)
    assert event.data["note"] == "\U0001f600"


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
    assert (
        row["attachments"]
        == f"{URL.replace('Signature=abc', 'Signature=REDACTED')},https://x.example.com/b.jpg"
    )
    # raw_json keeps the body's values, the signature replaced
    assert "X-Amz-Signature=abc" in event.raw
    stored = json.loads(row["raw_json"])
    assert stored["traceId"] == TRACE
    assert json.loads(stored["data"])["attachments"][0] == URL.replace("Signature=abc", "Signature=REDACTED")
    assert row["created_date"].isoformat() == "2026-03-01"
