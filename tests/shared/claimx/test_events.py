"""ClaimX event parsing and the trace id: the test vector, both field spellings, stable ids
without ``ingestedAt``, and every way a body is invalid."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from shared.claimx.events import (
    PROJECT_FILE_ADDED,
    ClaimXEvent,
    InvalidBody,
    parse_claimx_body,
    trace_id,
)

pytestmark = pytest.mark.unit

ENQUEUED = datetime(2026, 11, 23, 9, 30, 15, tzinfo=UTC)
VECTOR = "d3693f548ea135ae7a27c88065be7a253d3039d9e4096ef0292afffe41eb4da6"


def parse(body: object, enqueued: datetime = ENQUEUED) -> ClaimXEvent:
    parsed = parse_claimx_body(json.dumps(body), enqueued_at=enqueued)
    assert isinstance(parsed, ClaimXEvent), parsed
    return parsed


def invalid(body: str | bytes) -> str:
    parsed = parse_claimx_body(body, enqueued_at=ENQUEUED)
    assert isinstance(parsed, InvalidBody), parsed
    assert parsed.raw == (body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else body)
    return parsed.reason


def test_trace_id_vector() -> None:
    assert trace_id("5395115", PROJECT_FILE_ADDED, "2026-02-14T15:04:05Z", media_id="97138881") == VECTOR


@pytest.mark.parametrize(
    "body",
    [
        {
            "eventType": "PROJECT_FILE_ADDED",
            "projectId": 5395115,
            "ingestedAt": "2026-02-14T15:04:05Z",
            "mediaId": 97138881,
        },
        {
            "event_type": "PROJECT_FILE_ADDED",
            "project_id": "5395115",
            "ingested_at": "2026-02-14T15:04:05Z",
            "media_id": "97138881",
        },
    ],
)
def test_camel_and_snake_case_give_the_vector(body: dict[str, object]) -> None:
    event = parse(body)
    assert event.trace_id == VECTOR
    assert (event.project_id, event.media_id) == ("5395115", "97138881")
    assert event.ingested_at == datetime(2026, 2, 14, 15, 4, 5, tzinfo=UTC)
    assert event.ingested_at_text == "2026-02-14T15:04:05Z"
    assert event.skip_reason is None


def test_snake_case_wins_and_empty_counts_as_absent() -> None:
    event = parse(
        {
            "eventType": "CUSTOM_TASK_COMPLETED",
            "event_type": "PROJECT_FILE_ADDED",
            "projectId": 1,
            "project_id": 5395115,
            "ingested_at": "  ",
            "ingestedAt": "2026-02-14T15:04:05Z",
            "media_id": "",
            "mediaId": 97138881,
            "masterFileName": "",
        }
    )
    assert event.trace_id == VECTOR
    assert event.master_file_name is None


def test_all_parts_in_order() -> None:
    event = parse(
        {
            "eventType": "X",
            "projectId": 7,
            "ingestedAt": "2026-02-14T15:04:05+00:00",
            "masterFileName": "MFN-1",
            "videoCollaborationId": 3,
            "taskAssignmentId": "2",
            "mediaId": 1,
        }
    )
    text = "7|X|2026-02-14T15:04:05+00:00|media:1|task:2|video:3|file:MFN-1"
    assert event.trace_id == hashlib.sha256(text.encode()).hexdigest()
    assert event.skip_reason == "unknown_event_type"


def test_missing_ingested_at_uses_the_enqueued_time_and_is_stable() -> None:
    body = {"eventType": "PROJECT_CREATED", "projectId": 42}
    first, again = parse(body), parse(body)
    assert first.trace_id == again.trace_id
    assert first.ingested_at == ENQUEUED
    assert first.ingested_at_text == ENQUEUED.isoformat()
    assert first.trace_id == trace_id("42", "PROJECT_CREATED", ENQUEUED.isoformat())
    later = parse(body, enqueued=datetime(2026, 11, 23, 9, 31, tzinfo=UTC))
    assert later.trace_id != first.trace_id


def test_ingested_at_text_is_used_exactly_as_received() -> None:
    a = parse({"eventType": "PROJECT_CREATED", "projectId": 1, "ingestedAt": "2026-02-14T15:04:05Z"})
    b = parse({"eventType": "PROJECT_CREATED", "projectId": 1, "ingestedAt": "2026-02-14T15:04:05.000Z"})
    assert a.ingested_at == b.ingested_at
    assert a.trace_id != b.trace_id


def test_a_bom_before_a_valid_body_is_accepted() -> None:
    body = "\ufeff" + json.dumps({"eventType": "PROJECT_CREATED", "projectId": 1})
    assert isinstance(parse_claimx_body(body.encode("utf-8"), enqueued_at=ENQUEUED), ClaimXEvent)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('"text"', "not a JSON object"),
        ("[" * 150_000 + "]" * 150_000, "body of"),
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
        (json.dumps({"projectId": 1}), "eventType is missing"),
        (json.dumps({"eventType": "", "projectId": 1}), "eventType is missing"),
        (json.dumps({"eventType": "PROJECT_CREATED"}), "projectId is missing"),
        (json.dumps({"eventType": "PROJECT_CREATED", "projectId": "12a"}), "projectId must be numeric"),
        (json.dumps({"eventType": "PROJECT_CREATED", "projectId": -3}), "projectId must be numeric"),
        (json.dumps({"eventType": "PROJECT_CREATED", "projectId": True}), "must be a string or a number"),
        (json.dumps({"eventType": {"a": 1}, "projectId": 1}), "must be a string or a number"),
        (json.dumps({"eventType": "A", "projectId": 1, "ingestedAt": "yesterday"}), "not an ISO date-time"),
        (
            json.dumps({"eventType": "A", "projectId": 1, "ingestedAt": "9999-12-31T23:59:59-23:00"}),
            "Overflow",
        ),
        (json.dumps({"eventType": "A" * 5000, "projectId": 1}), "longer than"),
    ],
)
def test_invalid_bodies(body: str, reason: str) -> None:
    assert reason in invalid(body)


def test_invalid_utf8_is_kept_as_text() -> None:
    """Invalid, like XACT's, and its dead letter keeps the bytes as escapes, so nothing is lost."""
    assert invalid(b"\xff\xfe{") == "not UTF-8 (byte 0xff at offset 0)"
