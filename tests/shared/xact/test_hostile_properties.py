"""Property tests over what a hostile body reaches without storage: the parser, the row builder and
its Table encoding, the path builder, the URL policy and redaction (issue 9). Arbitrary JSON,
Unicode (surrogates included) and sizes; each property says what must hold for every input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, Phase, assume, find, given, settings
from hypothesis import strategies as st

from shared.bodies import InvalidBody
from shared.errors import ClassifiedError, ErrorCategory
from shared.ids import media_id
from shared.lake.staging import MAX_ENTITY_BYTES, StagingTable, UnstageableRow, check_entity
from shared.pool import IoPool
from shared.redact import public_url, redact_json_text, redact_text, redact_url
from shared.transfer.stores import checked_path
from shared.transfer.urls import UrlPolicy
from shared.xact.events import XactEvent, parse_xact_body
from shared.xact.paths import MAX_FILE_NAME_BYTES, AttachmentTarget, attachment_targets
from shared.xact.rows import event_row
from shared.xact.tables import XACT_EVENTS
from tests.hostile import S3_HOST, bodies, event_documents, secret_urls, segments, urls

pytestmark = pytest.mark.unit

CREATED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = UrlPolicy.of((S3_HOST,))
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encoder() -> StagingTable:
    """A staging table used only to encode rows (no request is made)."""
    return StagingTable(
        TableServiceClient.from_connection_string("UseDevelopmentStorage=true"),
        IoPool(max_workers=1),
        table_name="unused",
    )


ENCODER = encoder()


@EXAMPLES
@given(bodies)
def test_the_parser_never_raises_and_an_invalid_body_keeps_storable_text(body: bytes | str) -> None:
    parsed = parse_xact_body(body)
    assert isinstance(parsed, (XactEvent, InvalidBody))
    if isinstance(parsed, InvalidBody):
        parsed.raw.encode("utf-8")  # a dead letter can hold it
        assert parsed.reason
    else:
        assert parsed.trace_id and parsed.raw.encode("utf-8")


@EXAMPLES
@given(event_documents(), st.booleans())
def test_a_valid_event_either_gets_a_stageable_row_or_a_reason(
    document: dict[str, Any], as_bytes: bool
) -> None:
    raw = json.dumps(document)
    parsed = parse_xact_body(raw.encode() if as_bytes else raw)
    if not isinstance(parsed, XactEvent):
        return
    row = event_row(parsed, created_at=CREATED)
    try:
        entity = ENCODER.encode(XACT_EVENTS, row)
    except UnstageableRow as exc:
        assert str(exc)
        return
    assert check_entity(XACT_EVENTS, entity) <= MAX_ENTITY_BYTES
    for value in entity.values():
        if isinstance(value, str):
            value.encode("utf-8")  # Delta (Arrow) will take it


@EXAMPLES
@given(st.lists(secret_urls(), min_size=1, max_size=3), st.booleans(), st.booleans())
def test_no_secret_survives_into_an_event_row(
    signed: list[tuple[str, list[str]]], data_as_text: bool, escaped: bool
) -> None:
    """raw_json and attachments keep each URL with its signature values replaced, whether the URLs
    sit in ``data`` as an object or as a JSON string, with plain or escaped characters."""
    data = {"assignmentId": "A1", "attachments": [url for url, _ in signed], "note": f"see {signed[0][0]}"}
    document = {
        "type": "verisk.claims.property.xn.documentsReceived",
        "utcDateTime": "2026-11-22T15:04:05Z",
        "traceId": "t-secret",
        "data": json.dumps(data, ensure_ascii=escaped) if data_as_text else data,
    }
    raw = json.dumps(document, ensure_ascii=escaped)
    if escaped:  # .NET writes & as \u0026
        raw = raw.replace("&", "\\u0026")
    event = parse_xact_body(raw)
    assert isinstance(event, XactEvent)
    row = event_row(event, created_at=CREATED)
    stored = json.dumps({k: v for k, v in row.items() if isinstance(v, str)})
    for _, secrets in signed:
        for secret in secrets:
            assert secret not in stored
    assert "REDACTED" in row["attachments"]


@EXAMPLES
@given(secret_urls())
def test_redaction_removes_every_planted_secret(signed: tuple[str, list[str]]) -> None:
    url, secrets = signed
    for text in (
        redact_url(url),
        redact_text(f"GET {url} failed"),
        redact_text(repr({"url": url, "Authorization": f"Bearer {secrets[0]}"})),
        redact_json_text(json.dumps({"u": url})),
        public_url(url),
    ):
        for secret in secrets:
            assert secret not in text


@EXAMPLES
@given(st.text(max_size=200))
def test_redaction_never_raises_and_leaves_plain_text_alone(text: str) -> None:
    redacted = redact_text(text)
    assert isinstance(redacted, str)
    if "=" not in text and ":" not in text and "://" not in text and " " not in text.strip():
        assert redacted == text


@EXAMPLES
@given(st.text(max_size=120) | urls)
def test_the_url_policy_only_ever_refuses_permanently(url: str) -> None:
    try:
        POLICY.check(url)
    except ClassifiedError as exc:
        assert exc.failure.category is ErrorCategory.PERMANENT
        return
    assert url.startswith("https://") and "@" not in url.split("/")[2]
    assert ".." not in url.split("?")[0].split("/")


@EXAMPLES
@given(
    segments,
    segments,
    segments | st.uuids().map(str),
    st.none() | segments,
    st.lists(urls, max_size=6),
)
def test_paths_are_safe_unique_and_independent_of_order(
    subtype: str, assignment: str, trace: str, version: str | None, attachments: list[str]
) -> None:
    # A URL no UTF-8 can hold (a lone surrogate from a JSON escape) never gets this far: its event's
    # row cannot be staged, so ingest dead-letters the body (the property above).
    assume(all(_storable(url) for url in attachments))
    pairs = list({media_id(trace, url): url for url in attachments}.items())
    targets = attachment_targets(
        status_subtype=subtype,
        assignment_id=assignment,
        trace_id=trace,
        estimate_version=version,
        attachments=pairs,
    )
    again = attachment_targets(
        status_subtype=subtype,
        assignment_id=assignment,
        trace_id=trace,
        estimate_version=version,
        attachments=pairs[::-1],
    )
    assert {m: str(t) for m, t in targets.items()} == {m: str(t) for m, t in again.items()}
    paths = [t.blob_path for t in targets.values() if isinstance(t, AttachmentTarget)]
    assert len({p.casefold() for p in paths}) == len(paths)
    for path in paths:
        assert checked_path(path) == path  # the store would write it, under its root
        parts = path.split("/")
        assert len(parts) == 4
        for part in parts:
            assert part not in ("", ".", "..") and not part.startswith(" ") and not part.endswith(".")
            assert all(ord(ch) >= 0x20 and ch not in "\\/" for ch in part)
            assert len(part.encode("utf-8")) <= MAX_FILE_NAME_BYTES


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the 32K author it finds
def test_the_strategies_reach_past_the_parser() -> None:
    """The properties above mean something only if the strategies make valid events, events whose
    row cannot be staged, and paths that had to be made safe; find one of each."""

    def valid(document: dict[str, Any]) -> bool:
        return isinstance(parse_xact_body(json.dumps(document)), XactEvent)

    def unstageable(document: dict[str, Any]) -> bool:
        event = parse_xact_body(json.dumps(document))
        if not isinstance(event, XactEvent):
            return False
        try:
            ENCODER.encode(XACT_EVENTS, event_row(event, created_at=CREATED))
        except UnstageableRow:
            return True
        return False

    budget = settings(max_examples=2000, database=None, phases=[Phase.generate])
    assert valid(find(event_documents(), valid, settings=budget))
    assert unstageable(find(event_documents(), unstageable, settings=budget))


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
