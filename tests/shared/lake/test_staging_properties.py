"""Staging against Azurite for arbitrary rows (issue 9): a row either reads back as it was staged,
or is refused with :class:`UnstageableRow` before anything is written. Azurite enforces none of
the Table limits, so what it would accept says nothing; the encoder's check is what must hold."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claimsflow.azurite import Azurite
from shared.lake.staging import StagingTable, UnstageableRow
from shared.lake.tables import coerce_row
from shared.pool import IoPool
from shared.xact.events import XactEvent, parse_xact_body
from shared.xact.rows import event_row
from shared.xact.tables import XACT_EVENTS
from tests.hostile import event_documents

pytestmark = pytest.mark.azurite

CREATED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def staging(azurite: Azurite, unique: Callable[[str], str], io_pool: IoPool) -> StagingTable:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return StagingTable(service, io_pool, table_name=unique("stg"), shards=4)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(event_documents(), min_size=1, max_size=6))
def test_rows_read_back_as_staged_or_are_refused_before_any_write(
    staging: StagingTable, documents: list[dict[str, object]]
) -> None:
    example = uuid.uuid4().hex[:8]  # examples share the table; each stages its own keys
    expected: dict[str, dict[str, object]] = {}
    entities = []
    for n, document in enumerate(documents):
        event = parse_xact_body(json.dumps({**document, "traceId": f"{example}-{n}"}))
        if not isinstance(event, XactEvent):
            continue
        row = event_row(event, created_at=CREATED)
        try:
            entities.append(staging.encode(XACT_EVENTS, row))
        except UnstageableRow:
            continue
        expected[event.trace_id] = {k: v for k, v in coerce_row(XACT_EVENTS, row).items() if v is not None}
    staging.stage_entities(XACT_EVENTS, entities, together=True)
    staged = {r.key: r.values for r in staging.read(XACT_EVENTS, 10_000) if r.key.startswith(example)}
    assert staged == expected
