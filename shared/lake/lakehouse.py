"""The lakehouse of one app: its table catalog, the staging table, one Delta writer per table and
the per-table leases. Built once per process by the runtime, so ``DeltaTable`` objects and clients
are kept between timer runs."""

from __future__ import annotations

import logging
import threading

from azure.storage.blob import BlobServiceClient

from shared.config import Settings
from shared.lake.compaction import CompactionResult, CompactionStatus, compact_table
from shared.lake.delta_writer import DeltaWriter
from shared.lake.flush import DEFAULT_MAX_BATCHES, DEFAULT_MAX_SECONDS, FlushResult, FlushStatus, flush_table
from shared.lake.staging import StagingTable
from shared.lake.tables import TableCatalog, TableSpec
from shared.pool import IoPool
from shared.state.leases import TableLease
from shared.storage import StorageFactory

log = logging.getLogger(__name__)

PARALLEL_FLUSHES = 4  # MERGEs are CPU-bound in delta-rs: more at once only share the same cores


class Lakehouse:
    def __init__(
        self,
        settings: Settings,
        storage: StorageFactory,
        *,
        tables: TableCatalog,
        staging: StagingTable,
        pool: IoPool,
        lock_container: str | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.tables = tables
        self.staging = staging
        self._pool = pool
        self._blob_service: BlobServiceClient = storage.blob_service()
        self._lock_container = lock_container or settings.state_container("locks")
        self._writers: dict[str, DeltaWriter] = {}
        self._lock = threading.Lock()

    def writer(self, spec: TableSpec) -> DeltaWriter:
        with self._lock:
            writer = self._writers.get(spec.name)
            if writer is None:
                writer = DeltaWriter.for_table(spec, self.settings, self.storage)
                self._writers[spec.name] = writer
            return writer

    def lease(self, spec: TableSpec) -> TableLease:
        return TableLease(self._blob_service, spec.name, container=self._lock_container)

    def flush(
        self,
        spec: TableSpec,
        *,
        max_batches: int = DEFAULT_MAX_BATCHES,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
    ) -> FlushResult:
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
        """Flush every table of the catalog in parallel (each has its own lease and Delta table);
        one table's failure does not stop the others."""

        def one(spec: TableSpec) -> FlushResult:
            try:
                return self.flush(spec, max_batches=max_batches, max_seconds=max_seconds)
            except Exception as exc:
                log.exception("flush of %s failed", spec.name)
                return FlushResult(spec.name, FlushStatus.FAILED, error=f"{type(exc).__name__}: {exc}")

        specs = tables if tables is not None else list(self.tables)
        results: list[FlushResult] = []
        for start in range(0, len(specs), PARALLEL_FLUSHES):
            results += self._pool.map(one, specs[start : start + PARALLEL_FLUSHES])
        return results

    def compact(self, spec: TableSpec) -> CompactionResult:
        return compact_table(
            spec,
            writer=self.writer(spec),
            lease=self.lease(spec),
            retention_hours=self.settings.vacuum_retention_hours,
        )

    def compact_all(self, tables: list[TableSpec] | None = None) -> list[CompactionResult]:
        """Compact the tables one after another (each rewrites files; in parallel they would only
        compete for the same cores); one table's failure does not stop the others."""
        results = []
        for spec in tables if tables is not None else list(self.tables):
            try:
                results.append(self.compact(spec))
            except Exception as exc:
                log.exception("compaction of %s failed", spec.name)
                error = f"{type(exc).__name__}: {exc}"
                results.append(CompactionResult(spec.name, CompactionStatus.FAILED, error=error))
        return results
