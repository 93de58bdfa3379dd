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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.lake.delta_writer import DeltaWriter
from shared.lake.staging import StagingTable
from shared.lake.tables import TableSpec, all_specs, get_spec
from shared.state.leases import TableLease

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.lake.compaction import CompactionResult
    from shared.storage import StorageFactory

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

    @property
    def rows_merged(self) -> int:
        return self.merged

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


def flush_table(
    spec: TableSpec | str,
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
    spec = get_spec(spec)
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


class Lakehouse:
    """Staging + one writer per table + leases: built once per process (Functions timers and
    ``claimsflow run`` share it) so ``DeltaTable`` objects and clients are kept."""

    def __init__(
        self,
        settings: Settings,
        storage: StorageFactory,
        *,
        staging_table: str | None = None,
        lock_container: str | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        # The same names the activities stage under (scoped like the task hub).
        self.staging = StagingTable(
            storage.table_service(),
            shards=settings.table_shards,
            table_name=staging_table or settings.state_table("staging"),
        )
        self._blob_service = storage.blob_service()
        self._lock_container = lock_container or settings.state_container("locks")
        self._writers: dict[str, DeltaWriter] = {}
        self._lock = threading.Lock()

    def writer(self, table: TableSpec | str) -> DeltaWriter:
        spec = get_spec(table)
        with self._lock:
            writer = self._writers.get(spec.name)
            if writer is None:
                writer = DeltaWriter.for_table(spec, self.settings, self.storage)
                self._writers[spec.name] = writer
            return writer

    def lease(self, table: TableSpec | str) -> TableLease:
        return TableLease(self._blob_service, get_spec(table).name, container=self._lock_container)

    def flush(
        self,
        table: TableSpec | str,
        *,
        max_batches: int = DEFAULT_MAX_BATCHES,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
    ) -> FlushResult:
        spec = get_spec(table)
        return flush_table(
            spec,
            staging=self.staging,
            writer=self.writer(spec),
            lease=self.lease(spec),
            max_rows=self.settings.flush_max_rows,
            max_batches=max_batches,
            max_seconds=max_seconds,
        )

    def flush_all(
        self,
        tables: list[TableSpec] | None = None,
        *,
        max_batches: int = DEFAULT_MAX_BATCHES,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
    ) -> list[FlushResult]:
        """Flush every registered table, tables in parallel (each has its own lease and Delta
        table); one table's failure does not stop the others."""
        specs = tables if tables is not None else all_specs()

        def one(spec: TableSpec) -> FlushResult:
            try:
                return self.flush(spec, max_batches=max_batches, max_seconds=max_seconds)
            except Exception as exc:
                log.exception("flush of %s failed", spec.name)
                error = f"{type(exc).__name__}: {exc}"
                return FlushResult(spec.name, FlushStatus.FAILED, error=error)

        if len(specs) <= 1:
            return [one(spec) for spec in specs]
        with ThreadPoolExecutor(min(len(specs), 4), thread_name_prefix="flush") as pool:
            return list(pool.map(one, specs))

    def compact(self, table: TableSpec | str) -> CompactionResult:
        from shared.lake.compaction import compact_table

        spec = get_spec(table)
        return compact_table(
            spec,
            writer=self.writer(spec),
            lease=self.lease(spec),
            retention_hours=self.settings.vacuum_retention_hours,
        )

    def compact_all(self, tables: list[TableSpec] | None = None) -> list[CompactionResult]:
        from shared.lake.compaction import CompactionResult, CompactionStatus

        results = []
        for spec in tables if tables is not None else all_specs():
            try:
                results.append(self.compact(spec))
            except Exception as exc:
                log.exception("compaction of %s failed", spec.name)
                results.append(
                    CompactionResult(spec.name, CompactionStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
                )
        return results

    def close(self) -> None:
        self.staging.close()


_PROCESS_LAKEHOUSES: dict[tuple[str | None, ...], Lakehouse] = {}
_PROCESS_LOCK = threading.Lock()


def get_lakehouse(settings: Settings, storage: StorageFactory) -> Lakehouse:
    """The process's Lakehouse for these settings (one per lake and state account)."""
    key = (
        settings.lake_tables_uri,
        settings.taskhub_name,
        settings.storage_connection_string,
        settings.storage_table_service_uri,
        str(settings.table_shards),
    )
    with _PROCESS_LOCK:
        lakehouse = _PROCESS_LAKEHOUSES.get(key)
        if lakehouse is None:
            lakehouse = Lakehouse(settings, storage)
            _PROCESS_LAKEHOUSES[key] = lakehouse
        return lakehouse


def flush_all(settings: Settings, storage: StorageFactory) -> list[FlushResult]:
    """Timer entry point: flush every table with the process's Lakehouse."""
    return get_lakehouse(settings, storage).flush_all()
