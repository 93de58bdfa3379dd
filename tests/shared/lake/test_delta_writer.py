from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from shared.config import Settings
from shared.lake.delta_writer import (
    DeltaWriter,
    merge_predicate,
    upsert_updates,
)
from shared.lake.reader import read_delta
from shared.lake.tables import TableSpec, WriteMode
from shared.storage import StorageFactory
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

pytestmark = pytest.mark.azurite

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def writer_for(settings: Settings, spec: TableSpec) -> DeltaWriter:
    return DeltaWriter.for_table(spec, settings, StorageFactory(settings))


def read(writer: DeltaWriter) -> pl.DataFrame:
    return read_delta(writer.uri, writer.storage_options)


def event(trace_id: str, day: int = 1, **extra: Any) -> dict[str, Any]:
    return {"trace_id": trace_id, "event_date": date(2026, 11, day), "type": "a.b.created", **extra}


@pytest.mark.unit
def test_predicates() -> None:
    assert merge_predicate(XACT_EVENTS) == 't."event_date" = s."event_date" AND t."trace_id" = s."trace_id"'
    assert merge_predicate(XACT_ATTACHMENTS_FAILED) == 't."media_id" = s."media_id"'
    updates = upsert_updates(XACT_ATTACHMENTS_FAILED)
    assert "media_id" not in updates
    assert updates["status"] == 'coalesce(s."status", t."status")'
    assert updates["created_at"] == 'coalesce(t."created_at", s."created_at")'


def test_creates_the_partitioned_table_on_first_use(make_settings: Callable[..., Settings]) -> None:
    writer = writer_for(make_settings(), XACT_EVENTS)
    assert not writer.exists()
    metrics = writer.merge([event("t1", 1), event("t2", 2)])
    assert (metrics.inserted, metrics.source_rows, metrics.attempts) == (2, 2, 1)
    dt = DeltaTable(writer.uri, storage_options=writer.storage_options)
    assert dt.metadata().partition_columns == ["event_date"]
    assert [f.name for f in dt.schema().fields] == XACT_EVENTS.columns
    frame = read(writer)
    assert frame.select(XACT_EVENTS.columns).schema == XACT_EVENTS.schema
    assert writer.exists()


def test_insert_only_never_duplicates_nor_updates(make_settings: Callable[..., Settings]) -> None:
    writer = writer_for(make_settings(), XACT_EVENTS)
    rows = [event(f"t{i}", 1 + i % 3, raw_json=f'{{"n":{i}}}') for i in range(30)]
    writer.merge(rows)
    again = writer.merge([*rows, event("t1", 2, raw_json="changed"), event("t99", 3)])
    assert again.inserted == 1 and again.updated == 0
    frame = read(writer)
    assert frame.height == 31 and frame["trace_id"].n_unique() == 31
    assert frame.filter(pl.col("trace_id") == "t1")["raw_json"].to_list() == ['{"n":1}']


def test_source_rows_are_deduplicated_later_non_null_wins(make_settings: Callable[..., Settings]) -> None:
    writer = writer_for(make_settings(), XACT_EVENTS)
    metrics = writer.merge([event("t1", note="first", author="a"), event("t1", note="second", author=None)])
    assert metrics.source_rows == 1
    assert read(writer).select("note", "author").rows() == [("second", "a")]


def test_upsert_keeps_created_at_and_never_nulls(make_settings: Callable[..., Settings]) -> None:
    writer = writer_for(make_settings(), XACT_ATTACHMENTS_FAILED)
    writer.merge(
        [
            {
                "media_id": "m1",
                "trace_id": "t1",
                "status": "failed_permanent",
                "error_message": "HTTP 404",
                "http_status": 404,
                "retry_count": 0,
                "failed_at": T0,
                "created_at": T0,
            }
        ]
    )
    later = T0 + timedelta(hours=1)
    metrics = writer.merge(
        [
            {
                "media_id": "m1",
                "status": "exhausted",
                "error_message": None,
                "retry_count": 4,
                "failed_at": later,
                "created_at": later,
            },
            {"media_id": "m2", "status": "rejected", "created_at": later},
        ]
    )
    assert (metrics.updated, metrics.inserted) == (1, 1)
    rows = {r["media_id"]: r for r in read(writer).to_dicts()}
    m1 = rows["m1"]
    assert m1["status"] == "exhausted" and m1["retry_count"] == 4 and m1["failed_at"] == later
    assert m1["error_message"] == "HTTP 404" and m1["http_status"] == 404 and m1["trace_id"] == "t1"
    assert m1["created_at"] == T0
    assert rows["m2"]["created_at"] == later


def test_update_only_when_changed(make_settings: Callable[..., Settings]) -> None:
    spec = TableSpec(
        name="test_templates",
        schema=pl.Schema(
            {"template_id": pl.String(), "title": pl.String(), "modified_date": pl.Datetime("us", "UTC")}
        ),
        key=("template_id",),
        mode=WriteMode.UPSERT,
        update_only_when_changed="modified_date",
        preserve_on_update=(),
    )
    writer = writer_for(make_settings(), spec)
    writer.merge([{"template_id": "x", "title": "v1", "modified_date": T0}])
    same = writer.merge([{"template_id": "x", "title": "v1-bis", "modified_date": T0}])
    assert same.updated == 0
    changed = writer.merge([{"template_id": "x", "title": "v2", "modified_date": T0 + timedelta(days=1)}])
    assert changed.updated == 1
    assert read(writer)["title"].to_list() == ["v2"]


class RacingWriter(DeltaWriter):
    """Lets a rival writer commit between this writer's table refresh and its MERGE, once."""

    rival: DeltaWriter
    rival_rows: list[dict[str, Any]]
    raced = False

    def _execute(self, dt: DeltaTable, source: pl.DataFrame) -> dict[str, Any]:
        if not self.raced:
            self.raced = True
            self.rival.merge(self.rival_rows)
        return super()._execute(dt, source)


def test_commit_conflict_is_retried_on_a_reloaded_table(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    storage = StorageFactory(settings)
    base = DeltaWriter.for_table(XACT_ATTACHMENTS, settings, storage)
    base.merge([{"media_id": "seed", "event_date": date(2026, 11, 1)}])
    racer = RacingWriter.for_table(XACT_ATTACHMENTS, settings, storage)
    assert isinstance(racer, RacingWriter)
    racer.rival = DeltaWriter.for_table(XACT_ATTACHMENTS, settings, storage)
    shared = [{"media_id": f"m{i}", "event_date": date(2026, 11, 1)} for i in range(10)]
    racer.rival_rows = shared
    metrics = racer.merge([*shared, {"media_id": "mine", "event_date": date(2026, 11, 1)}])
    assert metrics.attempts == 2  # the first commit lost to the rival and was re-run
    assert metrics.inserted == 1
    frame = read(base)
    assert frame.height == 12 and frame["media_id"].n_unique() == 12


def test_two_writers_merging_concurrently_both_succeed(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    storage = StorageFactory(settings)
    writers = [DeltaWriter.for_table(XACT_ATTACHMENTS, settings, storage) for _ in range(2)]
    writers[0].merge([{"media_id": "seed", "event_date": date(2026, 11, 1)}])
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    attempts: list[int] = []

    def run(index: int) -> None:
        try:
            for round_ in range(4):
                rows = [
                    {"media_id": f"r{round_}-{i}", "event_date": date(2026, 11, 1), "file_type": str(index)}
                    for i in range(index * 5, index * 5 + 20)  # half of the keys overlap
                ]
                barrier.wait()
                attempts.append(writers[index].merge(rows).attempts)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    frame = read(writers[0])
    assert frame.height == 1 + 4 * 25
    assert frame["media_id"].n_unique() == frame.height
