"""Property tests over what a hostile ClaimX body reaches without storage: the parser, the trace id
and the ``claimx_events`` row with its Table encoding. ClaimX-shaped JSON whose every field may be
hostile (ids of any type, dates at the calendar's ends, Unicode with surrogates, long text), and
arbitrary bodies; each property says what must hold for every input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bodies import InvalidBody
from shared.claimx.events import EVENT_TYPES, ClaimXEvent, parse_claimx_body
from shared.claimx.ingest import event_row
from shared.claimx.tables import CLAIMX_EVENTS
from shared.lake.staging import MAX_ENTITY_BYTES, StagingTable, UnstageableRow, check_entity
from shared.pool import IoPool
from tests.hostile import any_text, bodies, json_values, long_texts, moments, segments, unicode_text

pytestmark = pytest.mark.unit

ENQUEUED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CREATED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCODER = StagingTable(
    TableServiceClient.from_connection_string("UseDevelopmentStorage=true"),
    IoPool(max_workers=1),
    table_name="unused",  # only encodes rows: no request is made
)

surrogates = st.sampled_from(["\ud800", "x\udc00y"])  # rare in any_text, so drawn on purpose
ids = (
    st.none() | st.integers() | st.integers(min_value=10**30) | st.floats() | segments | any_text | surrogates
)
numbers = st.integers(min_value=0) | st.integers(min_value=0).map(str)
# Moments whose UTC time falls off the calendar (the 9999 line of the XACT acceptance).
edges = st.sampled_from(
    ["9999-12-31T23:00:00-23:00", "0001-01-01T00:30:00+14:00", "9999-12-31T23:59:59.999999-00:01"]
)
names = st.none() | unicode_text | any_text | surrogates | long_texts | st.text(max_size=2_000)
CAMEL = ("projectId", "mediaId", "taskAssignmentId", "videoCollaborationId")
SNAKE = ("project_id", "media_id", "task_assignment_id", "video_collaboration_id")


def mostly(draw: st.DrawFn, usual: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """Three draws in four from ``usual``, so that most documents get past the parser to the row."""
    return draw(usual if draw(st.integers(0, 3)) else hostile)


@st.composite
def claimx_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A ClaimX-shaped JSON object, fields in either case (or both), every value possibly hostile."""
    document: dict[str, Any] = {}
    for camel, snake in zip(CAMEL, SNAKE, strict=True):
        is_project = camel == "projectId"
        spellings = [(camel,), (snake,), (camel, snake)] + ([] if is_project else [()])
        for name in draw(st.sampled_from(spellings)):
            document[name] = mostly(draw, numbers, ids) if is_project else draw(ids)
    event_type = mostly(draw, st.sampled_from(sorted(EVENT_TYPES)), unicode_text | json_values)
    document[draw(st.sampled_from(["eventType", "event_type"]))] = event_type
    document[draw(st.sampled_from(["ingestedAt", "ingested_at"]))] = draw(
        st.none() | moments | edges | any_text
    )
    document["masterFileName"] = draw(names)
    document.update(draw(st.dictionaries(unicode_text, json_values, max_size=3)))
    return document


claimx_bodies = st.one_of(
    claimx_documents().map(json.dumps),
    claimx_documents().map(lambda d: json.dumps(d).encode("utf-8", errors="surrogatepass")),
    bodies,
)


@EXAMPLES
@given(claimx_bodies)
def test_the_parser_never_raises_and_an_invalid_body_keeps_storable_text(body: bytes | str) -> None:
    parsed = parse_claimx_body(body, enqueued_at=ENQUEUED)
    assert isinstance(parsed, (ClaimXEvent, InvalidBody))
    if isinstance(parsed, InvalidBody):
        parsed.raw.encode("utf-8")  # a dead letter can hold it
        assert parsed.reason
    else:
        assert parse_claimx_body(body, enqueued_at=ENQUEUED) == parsed  # the same id every delivery
        assert parsed.project_id.isdigit() and len(parsed.trace_id) == 64


@EXAMPLES
@given(claimx_documents())
def test_a_valid_event_either_gets_a_stageable_row_or_a_reason(document: dict[str, Any]) -> None:
    parsed = parse_claimx_body(json.dumps(document), enqueued_at=ENQUEUED)
    if not isinstance(parsed, ClaimXEvent):
        return
    try:
        entity = ENCODER.encode(CLAIMX_EVENTS, event_row(parsed, created_at=CREATED))
    except UnstageableRow as exc:
        assert str(exc)
        return
    assert check_entity(CLAIMX_EVENTS, entity) <= MAX_ENTITY_BYTES
    for value in entity.values():
        if isinstance(value, str):
            value.encode("utf-8")  # Delta (Arrow) will take it
