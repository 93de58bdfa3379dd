"""Compaction: optimize (bin-packing), vacuum and checkpoint per table, under the flush's lease.

Every flush commit adds small files; compaction rewrites them into few large ones, vacuum
deletes the files no version within the retention still needs, and a checkpoint keeps table
opens cheap. It holds the same lease as the flush of that table, so the two never race
(an optimize that lost to a MERGE would fail its commit); a busy lease skips the round.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from shared.lake.delta_writer import DeltaWriter
from shared.lake.tables import TableSpec
from shared.state.leases import TableLease

log = logging.getLogger(__name__)

DELTA_MIN_RETENTION_HOURS = 168  # deltalake refuses shorter retention unless told otherwise


class CompactionStatus(StrEnum):
    COMPACTED = "compacted"
    MISSING = "missing"  # no Delta table yet: nothing was ever flushed
    SKIPPED_BUSY = "skipped_busy"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CompactionResult:
    table: str
    status: CompactionStatus
    files_removed: int = 0
    files_added: int = 0
    files_vacuumed: int = 0
    checkpoint_version: int | None = None
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def compact_table(
    spec: TableSpec,
    *,
    writer: DeltaWriter,
    lease: TableLease | None,
    retention_hours: int,
) -> CompactionResult:
    """Optimize, vacuum and checkpoint one table; skips when the lease is busy."""
    started = time.perf_counter()
    if lease is not None and not lease.acquire():
        return CompactionResult(spec.name, CompactionStatus.SKIPPED_BUSY)
    try:
        if not writer.exists():
            return CompactionResult(spec.name, CompactionStatus.MISSING)
        dt = writer.table()
        optimized: dict[str, Any] = dt.optimize.compact()
        vacuumed = dt.vacuum(
            retention_hours=retention_hours,
            enforce_retention_duration=retention_hours >= DELTA_MIN_RETENTION_HOURS,
            dry_run=False,
        )
        dt.create_checkpoint()
        version = dt.version()
    finally:
        if lease is not None:
            lease.release()
    return CompactionResult(
        spec.name,
        CompactionStatus.COMPACTED,
        files_removed=int(optimized.get("numFilesRemoved", 0)),
        files_added=int(optimized.get("numFilesAdded", 0)),
        files_vacuumed=len(vacuumed),
        checkpoint_version=version,
        seconds=time.perf_counter() - started,
    )
