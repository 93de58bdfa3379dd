from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum

import polars as pl
import pytest

from shared.lake.tables import (
    TableCatalog,
    TableSpec,
    WriteMode,
    coerce_row,
    combine_rows,
    rows_to_frame,
)
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

pytestmark = pytest.mark.unit

UTC_US = pl.Datetime("us", "UTC")


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


def test_compound_keys_and_catalog_conflicts() -> None:
    spec = TableSpec(
        name="test_compound",
        schema=pl.Schema({"a": pl.String(), "b": pl.String(), "v": pl.Int64()}),
        key=("a", "b"),
        mode=WriteMode.UPSERT,
    )
    assert spec.key_of({"a": "x|y", "b": "z"}) != spec.key_of({"a": "x", "b": "y|z"})
    catalog = TableCatalog([spec])
    assert catalog.spec("test_compound") is spec
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        catalog.spec("nope")
    with pytest.raises(ValueError, match="declared twice"):
        TableCatalog([spec, replace(spec, key=("a",))])
    with pytest.raises(ValueError):
        TableSpec(name="Bad-Name", schema=pl.Schema({"a": pl.String()}), key=("a",))
    with pytest.raises(ValueError):
        TableSpec(name="bad", schema=pl.Schema({"a": pl.String()}), key=("missing",))


VERSIONED = TableSpec(
    name="test_versioned",
    schema=pl.Schema(
        {"k": pl.String(), "a": pl.String(), "b": pl.String(), "created_at": UTC_US, "updated_at": UTC_US}
    ),
    key=("k",),
    mode=WriteMode.UPSERT,
    version="updated_at",
)


def test_a_versioned_fold_does_not_depend_on_the_order_of_rows() -> None:
    t1, t2, t3 = (datetime(2026, 11, 1, h, tzinfo=UTC) for h in (1, 2, 3))
    rows = [
        {"k": "p", "a": "old", "b": "kept", "created_at": t1, "updated_at": t1},
        {"k": "p", "a": "new", "b": None, "created_at": t3, "updated_at": t3},
        {"k": "p", "a": None, "b": None, "created_at": t2, "updated_at": t2},
    ]
    results = [combine_rows(VERSIONED, order) for order in itertools.permutations(rows)]
    assert all(result == results[0] for result in results)
    # the newest non-null of each column; created_at from the oldest row; the highest version
    assert results[0] == [{"k": "p", "a": "new", "b": "kept", "created_at": t1, "updated_at": t3}]


def test_a_version_column_is_required_and_only_for_upserts() -> None:
    assert "updated_at" in VERSIONED.required
    with pytest.raises(ValueError, match="required columns"):
        coerce_row(VERSIONED, {"k": "p", "a": "x"})
    with pytest.raises(ValueError, match="only upsert tables"):
        replace(VERSIONED, mode=WriteMode.INSERT_ONLY)
    assert VERSIONED.staging_key_of({"k": "p", "updated_at": datetime(2026, 1, 1, tzinfo=UTC)}) != (
        VERSIONED.staging_key_of({"k": "p", "updated_at": datetime(2026, 1, 2, tzinfo=UTC)})
    )
