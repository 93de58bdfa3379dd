"""Flush: staged rows -> Delta MERGE -> etag-guarded delete, exactly once per key.

Under the table's lease: read up to ``flush_max_rows`` staged rows, MERGE them, then delete each
staged entity only if its etag is unchanged. A row updated during the flush keeps its new etag
and is merged by the next flush; a crash between the commit and the delete re-merges the same
rows next time, which the MERGE makes harmless (insert-only ignores known keys, upsert coalesces
the same values). The lease only keeps flush and compaction of one table apart; correctness does
not depend on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from shared import metrics
from shared.clock import utc_now
from shared.lake.delta_writer import DeltaWriter
from shared.lake.staging import StagedRow, StagingTable
from shared.lake.tables import TableSpec
from shared.state.leases import TableLease

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCHES = 20
DEFAULT_MAX_SECONDS = 10.0  # stop starting batches in time for the next timer tick (15 s)


class FlushStatus(StrEnum):
    FLUSHED = "flushed"
    EMPTY = "empty"
    SKIPPED_BUSY = "skipped_busy"  # the lease is held by another flush or a compaction
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FlushResult:
    table: str
    status: FlushStatus
    read: int = 0
    merged: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    kept: int = 0  # changed during the flush: left staged for the next one
    batches: int = 0
    more: bool = False  # the last batch was full: more rows may be waiting
    version: int | None = None
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def flush_table(
    spec: TableSpec,
    *,
    staging: StagingTable,
    writer: DeltaWriter,
    lease: TableLease | None,
    max_rows: int,
    max_batches: int = 1,
    max_seconds: float | None = None,
) -> FlushResult:
    """Flush one table in up to ``max_batches`` batches of ``max_rows`` (no new batch after
    ``max_seconds``); ``lease=None`` runs unguarded (tests of concurrent flushes)."""
    started = time.perf_counter()
    if lease is not None and not lease.acquire():
        return FlushResult(spec.name, FlushStatus.SKIPPED_BUSY)
    result = FlushResult(spec.name, FlushStatus.EMPTY)
    try:
        for batch in range(max_batches):
            rows = staging.read(spec, max_rows)
            if batch == 0:
                record_backlog(spec, rows)
            if not rows:
                result = replace(result, more=False)
                break
            merged = writer.merge([r.values for r in rows])
            record_freshness(spec, rows)
            metrics.FLUSH_ROWS.add(merged.source_rows, table=spec.name)
            deleted = staging.delete_if_unchanged(rows)
            result = replace(
                result,
                status=FlushStatus.FLUSHED,
                read=result.read + len(rows),
                merged=result.merged + merged.source_rows,
                inserted=result.inserted + merged.inserted,
                updated=result.updated + merged.updated,
                deleted=result.deleted + deleted,
                kept=result.kept + len(rows) - deleted,
                batches=result.batches + 1,
                more=len(rows) >= max_rows,
                version=merged.version,
            )
            if not result.more:
                break
            if max_seconds is not None and time.perf_counter() - started >= max_seconds:
                break
        if lease is not None and lease.lost:
            log.warning("flush of %s finished after its lease was lost", spec.name)
    except Exception:
        metrics.FLUSH_FAILURES.add(table=spec.name)
        raise
    finally:
        if lease is not None:
            lease.release()
    seconds = time.perf_counter() - started
    metrics.FLUSH_DURATION.record(seconds, table=spec.name)
    return replace(result, seconds=seconds)


def record_backlog(spec: TableSpec, rows: Sequence[StagedRow]) -> None:
    """Staging backlog as the flush finds it: the rows it read (all of them when fewer than a
    batch, else at least that many) and the age of the oldest, by the storage service's clock."""
    metrics.STAGING_BACKLOG.record(len(rows), table=spec.name)
    stamps = [r.staged_at for r in rows if r.staged_at is not None]
    age = (time.time() - min(stamps).timestamp()) if stamps else 0.0
    metrics.STAGING_BACKLOG_AGE.record(max(age, 0.0), table=spec.name)


def record_freshness(spec: TableSpec, rows: Sequence[StagedRow]) -> None:
    """After the commit the rows are visible: event enqueued → visible, on the app's clock (the
    metric) and on the wall clock (the local run's report)."""
    now, wall = utc_now(), time.time()
    domain = spec.name.partition("_")[0]  # table names start with their domain
    for row in rows:
        if row.origin is not None:
            seconds = (now - row.origin.enqueued_at).total_seconds()
            metrics.FRESHNESS.record(seconds, domain=domain, table=spec.name)
            metrics.WALL_FRESHNESS.record(wall - row.origin.received_wall, domain=domain, table=spec.name)
