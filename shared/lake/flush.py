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
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from shared.lake.delta_writer import DeltaWriter
from shared.lake.staging import StagingTable
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
        for _ in range(max_batches):
            rows = staging.read(spec, max_rows)
            if not rows:
                result = replace(result, more=False)
                break
            metrics = writer.merge([r.values for r in rows])
            deleted = staging.delete_if_unchanged(rows)
            result = replace(
                result,
                status=FlushStatus.FLUSHED,
                read=result.read + len(rows),
                merged=result.merged + metrics.source_rows,
                inserted=result.inserted + metrics.inserted,
                updated=result.updated + metrics.updated,
                deleted=result.deleted + deleted,
                kept=result.kept + len(rows) - deleted,
                batches=result.batches + 1,
                more=len(rows) >= max_rows,
                version=metrics.version,
            )
            if not result.more:
                break
            if max_seconds is not None and time.perf_counter() - started >= max_seconds:
                break
        if lease is not None and lease.lost:
            log.warning("flush of %s finished after its lease was lost", spec.name)
    finally:
        if lease is not None:
            lease.release()
    return replace(result, seconds=time.perf_counter() - started)
