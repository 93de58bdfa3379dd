from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest
from deltalake import DeltaTable

from shared.lake.compaction import CompactionResult, CompactionStatus
from shared.lake.delta_writer import DeltaWriter, MergeMetrics
from shared.lake.flush import FlushStatus
from shared.lake.lakehouse import Lakehouse
from shared.lake.reader import read_delta
from shared.storage import LakeLocation
from shared.xact.tables import XACT_ATTACHMENTS, XACT_EVENTS

pytestmark = pytest.mark.azurite

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def flush_in_small_commits(lh: Lakehouse, commits: int, first: int = 0) -> None:
    for n in range(first, first + commits):
        rows = [
            {"media_id": f"c{n}-{i}", "event_date": date(2026, 11, 1 + i % 2), "created_at": T0}
            for i in range(10)
        ]
        lh.staging.stage_many(XACT_ATTACHMENTS, rows)
        assert lh.flush(XACT_ATTACHMENTS).status is FlushStatus.FLUSHED


def test_compaction_reduces_files_vacuums_and_checkpoints(make_lakehouse: Callable[..., Lakehouse]) -> None:
    lh = make_lakehouse(VACUUM_RETENTION_HOURS=0)
    flush_in_small_commits(lh, 6)
    writer = lh.writer(XACT_ATTACHMENTS)
    files_before = len(writer.table().file_uris())
    assert files_before == 12  # one file per partition per commit

    result = lh.compact(XACT_ATTACHMENTS)

    assert result.status is CompactionStatus.COMPACTED
    assert result.files_removed == 12 and result.files_added == 2
    assert result.files_vacuumed == 12  # retention 0: the replaced files are gone
    fresh = DeltaTable(writer.uri, storage_options=writer.storage_options)
    assert len(fresh.file_uris()) == 2
    location = LakeLocation.parse(lh.settings.lake_tables_uri).child("xact_attachments")
    container = lh.storage.lake_blob_service(location).get_container_client(location.container)
    names = [b.name for b in container.list_blobs(name_starts_with=f"{location.path}/_delta_log/")]
    assert any(n.endswith(f"{result.checkpoint_version:020d}.checkpoint.parquet") for n in names)
    assert any(n.endswith("_last_checkpoint") for n in names)
    frame = read_delta(writer.uri, writer.storage_options)
    assert frame.height == 60 and frame["media_id"].n_unique() == 60
    # the flush goes on after a compaction with its kept table
    flush_in_small_commits(lh, 1, first=100)
    assert read_delta(writer.uri, writer.storage_options).height == 70


def test_default_retention_keeps_recent_files(make_lakehouse: Callable[..., Lakehouse]) -> None:
    lh = make_lakehouse()  # 168 h: enforced by deltalake, nothing is old enough
    flush_in_small_commits(lh, 2)
    result = lh.compact(XACT_ATTACHMENTS)
    assert result.status is CompactionStatus.COMPACTED
    assert result.files_removed == 4 and result.files_vacuumed == 0


def test_missing_table_is_not_created(make_lakehouse: Callable[..., Lakehouse]) -> None:
    lh = make_lakehouse()
    assert lh.compact(XACT_EVENTS).status is CompactionStatus.MISSING
    assert not lh.writer(XACT_EVENTS).exists()


class HookedWriter(DeltaWriter):
    during_merge: Callable[[], None] | None = None

    def merge(self, rows: Iterable[Any] | pl.DataFrame) -> MergeMetrics:
        hook, self.during_merge = self.during_merge, None
        if hook is not None:
            hook()
        return super().merge(rows)


def test_compaction_skips_while_a_flush_holds_the_lease(make_lakehouse: Callable[..., Lakehouse]) -> None:
    lh = make_lakehouse(VACUUM_RETENTION_HOURS=0)
    flush_in_small_commits(lh, 2)
    writer = HookedWriter.for_table(XACT_ATTACHMENTS, lh.settings, lh.storage)
    assert isinstance(writer, HookedWriter)
    lh._writers[XACT_ATTACHMENTS.name] = writer
    during: list[CompactionResult] = []
    writer.during_merge = lambda: during.append(lh.compact(XACT_ATTACHMENTS))
    lh.staging.stage_many(XACT_ATTACHMENTS, [{"media_id": "x", "event_date": date(2026, 11, 1)}])
    assert lh.flush(XACT_ATTACHMENTS).inserted == 1
    assert [r.status for r in during] == [CompactionStatus.SKIPPED_BUSY]
    assert lh.compact(XACT_ATTACHMENTS).status is CompactionStatus.COMPACTED  # lease released
    results = lh.compact_all([XACT_ATTACHMENTS, XACT_EVENTS])
    assert [r.status for r in results] == [CompactionStatus.COMPACTED, CompactionStatus.MISSING]
