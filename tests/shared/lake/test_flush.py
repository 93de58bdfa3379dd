from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from shared.lake.delta_writer import DeltaWriter, MergeMetrics
from shared.lake.flush import FlushResult, FlushStatus, flush_table
from shared.lake.lakehouse import Lakehouse
from shared.lake.reader import read_delta
from shared.lake.staging import StagedRow, StagingTable
from shared.lake.tables import TableSpec, WriteMode
from shared.xact.tables import XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED, XACT_EVENTS

pytestmark = pytest.mark.azurite

XACT = [XACT_EVENTS, XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED]
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def rows_in(lakehouse: Lakehouse, spec: TableSpec) -> pl.DataFrame:
    writer = lakehouse.writer(spec)
    return read_delta(writer.uri, writer.storage_options)


def attachment(media_id: str, day: int = 1, **extra: Any) -> dict[str, Any]:
    return {"media_id": media_id, "event_date": date(2026, 11, day), "created_at": T0, **extra}


def test_flush_exactly_once_per_key(make_lakehouse: Callable[..., Lakehouse]) -> None:
    lh = make_lakehouse()
    assert lh.flush(XACT_EVENTS).status is FlushStatus.EMPTY
    lh.staging.stage_many(XACT_EVENTS, [{"trace_id": "t1", "event_date": date(2026, 11, 1), "type": "x"}])
    lh.staging.stage_many(XACT_EVENTS, [{"trace_id": "t1", "event_date": date(2026, 11, 1), "note": "n"}])
    first = lh.flush(XACT_EVENTS)
    assert (first.status, first.read, first.inserted, first.deleted, first.kept) == (
        FlushStatus.FLUSHED,
        1,
        1,
        1,
        0,
    )
    lh.staging.stage_many(XACT_EVENTS, [{"trace_id": "t1", "event_date": date(2026, 11, 1), "type": "again"}])
    second = lh.flush(XACT_EVENTS)
    assert (second.read, second.inserted) == (1, 0)
    frame = rows_in(lh, XACT_EVENTS)
    assert frame.select("trace_id", "type", "note").rows() == [("t1", "x", "n")]
    assert lh.staging.count(XACT_EVENTS) == 0


def test_flush_all_drains_in_batches(make_lakehouse: Callable[..., Lakehouse]) -> None:
    lh = make_lakehouse(FLUSH_MAX_ROWS=10, STATE_TABLE_SHARDS=4)
    lh.staging.stage_many(XACT_ATTACHMENTS, [attachment(f"m{i}", 1 + i % 5) for i in range(25)])
    lh.staging.stage_many(
        XACT_ATTACHMENTS_FAILED, [{"media_id": "f1", "status": "rejected", "created_at": T0}]
    )
    one = lh.flush(XACT_ATTACHMENTS, max_batches=1)
    assert (one.read, one.more) == (10, True)
    results = {r.table: r for r in lh.flush_all(XACT)}
    assert results["xact_attachments"].read == 15 and not results["xact_attachments"].more
    assert results["xact_attachments_failed"].inserted == 1
    assert results["xact_events"].status is FlushStatus.EMPTY
    assert rows_in(lh, XACT_ATTACHMENTS)["media_id"].n_unique() == 25
    assert rows_in(lh, XACT_ATTACHMENTS).height == 25


def test_two_flushes_at_once_without_the_lease(make_lakehouse: Callable[..., Lakehouse]) -> None:
    """Correctness does not rest on the lease: two unguarded flushes race on the same rows."""
    lh = make_lakehouse(STATE_TABLE_SHARDS=4)
    lh.staging.stage_many(XACT_ATTACHMENTS, [attachment(f"m{i}", 1 + i % 3) for i in range(300)])
    settings, storage = lh.settings, lh.storage
    writers = [DeltaWriter.for_table(XACT_ATTACHMENTS, settings, storage) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[FlushResult] = []
    errors: list[BaseException] = []

    def run(writer: DeltaWriter) -> None:
        try:
            barrier.wait()
            results.append(
                flush_table(XACT_ATTACHMENTS, staging=lh.staging, writer=writer, lease=None, max_rows=1000)
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(r.inserted for r in results) == 300  # each key inserted by exactly one of them
    lh.flush(XACT_ATTACHMENTS)
    frame = rows_in(lh, XACT_ATTACHMENTS)
    assert frame.height == 300 and frame["media_id"].n_unique() == 300
    assert lh.staging.count(XACT_ATTACHMENTS) == 0


class HookedWriter(DeltaWriter):
    """Runs a callback after the MERGE commits (while the flush still holds its rows)."""

    after_commit: Callable[[], None] | None = None

    def merge(self, rows: Iterable[Any] | pl.DataFrame) -> MergeMetrics:
        metrics = super().merge(rows)
        hook, self.after_commit = self.after_commit, None
        if hook is not None:
            hook()
        return metrics


def test_second_flush_skips_while_the_lease_is_held_and_updates_survive(
    make_lakehouse: Callable[..., Lakehouse],
) -> None:
    lh = make_lakehouse()
    spec = XACT_ATTACHMENTS_FAILED
    writer = HookedWriter.for_table(spec, lh.settings, lh.storage)
    assert isinstance(writer, HookedWriter)
    lh._writers[spec.name] = writer
    lh.staging.stage_many(spec, [{"media_id": f"m{i}", "status": "failed_permanent"} for i in range(5)])
    seen: list[FlushResult] = []

    def during_flush() -> None:
        seen.append(lh.flush(spec))  # a concurrent flush of the same table
        lh.staging.stage_many(spec, [{"media_id": "m3", "status": "exhausted", "retry_count": 4}])

    writer.after_commit = during_flush
    first = lh.flush(spec)
    assert [r.status for r in seen] == [FlushStatus.SKIPPED_BUSY]
    assert (first.read, first.deleted, first.kept) == (5, 4, 1)
    assert lh.staging.count(spec) == 1  # the row updated during the flush stayed
    second = lh.flush(spec)
    assert (second.read, second.updated, second.deleted) == (1, 1, 1)
    frame = rows_in(lh, spec).sort("media_id")
    assert frame.height == 5
    assert frame.filter(pl.col("media_id") == "m3").select("status", "retry_count").rows() == [
        ("exhausted", 4)
    ]


class DiedBeforeDelete(Exception):
    pass


class StagingDyingBeforeDelete(StagingTable):
    """Dies after the Delta commit, before any staged row is deleted."""

    def delete_if_unchanged(self, rows: Iterable[StagedRow]) -> int:
        raise DiedBeforeDelete("the flush stopped between the Delta commit and the staging delete")


@pytest.mark.parametrize("spec", [XACT_ATTACHMENTS, XACT_ATTACHMENTS_FAILED], ids=lambda s: s.mode.value)
def test_a_flush_stopping_between_commit_and_delete_is_harmless(
    make_lakehouse: Callable[..., Lakehouse], spec: TableSpec
) -> None:
    lh = make_lakehouse(STATE_TABLE_SHARDS=2)
    rows = [attachment(f"m{i}", 1 + i % 2, file_type="pdf") for i in range(40)]
    if spec is XACT_ATTACHMENTS_FAILED:
        rows = [{"media_id": r["media_id"], "status": "rejected", "created_at": T0} for r in rows]
    lh.staging.stage_many(spec, rows)
    dying = StagingDyingBeforeDelete(
        lh.staging.service, lh.staging.pool, table_name=lh.staging.table_name, shards=lh.staging.shards
    )
    with pytest.raises(DiedBeforeDelete):
        flush_table(spec, staging=dying, writer=lh.writer(spec), lease=lh.lease(spec), max_rows=1000)
    assert rows_in(lh, spec).height == 40  # committed
    assert lh.staging.count(spec) == 40  # but nothing deleted
    late: dict[str, Any] = {"media_id": "late", "created_at": T0}
    if spec.partition:
        late["event_date"] = date(2026, 11, 1)
    lh.staging.stage_many(spec, [late])
    after = lh.flush(spec)  # the lease was released by the stopped flush's finally (or expires)
    assert after.status is FlushStatus.FLUSHED and after.read == 41 and after.inserted == 1
    frame = rows_in(lh, spec)
    assert frame.height == 41 and frame["media_id"].n_unique() == 41
    assert lh.staging.count(spec) == 0


VERSIONED = TableSpec(
    name="test_entity",
    schema=pl.Schema(
        {
            "project_id": pl.String(),
            "status": pl.String(),
            "owner": pl.String(),
            "created_at": pl.Datetime("us", "UTC"),
            "updated_at": pl.Datetime("us", "UTC"),
        }
    ),
    key=("project_id",),
    partition="project_id",
    mode=WriteMode.UPSERT,
    version="updated_at",
)


def test_a_versioned_table_ends_the_same_whatever_order_rows_are_staged_and_flushed(
    make_lakehouse: Callable[..., Lakehouse],
) -> None:
    """Three events about one project, processed in every order and flushed after each one or all
    at once: the Delta row is the same every time."""
    t1, t2, t3 = (datetime(2026, 11, 1, h, tzinfo=UTC) for h in (1, 2, 3))
    events = [
        {"project_id": "p1", "status": "open", "owner": "ann", "created_at": t1, "updated_at": t1},
        {"project_id": "p1", "status": "closed", "created_at": t3, "updated_at": t3},
        {"project_id": "p1", "owner": "bob", "created_at": t2, "updated_at": t2},
    ]
    seen = set()
    for n, order in enumerate(itertools.permutations(events)):
        lh = make_lakehouse()
        for row in order:
            lh.staging.stage_many(VERSIONED, [row])
            if n % 2:  # flush after each event: the MERGE decides, not the staging fold
                lh.flush(VERSIONED)
        lh.flush(VERSIONED)
        assert lh.staging.count(VERSIONED) == 0
        seen.add(tuple(rows_in(lh, VERSIONED).row(0)))
    assert seen == {("p1", "closed", "bob", t1, t3)}
