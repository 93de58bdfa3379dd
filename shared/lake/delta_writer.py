"""The one Delta writer: MERGE staged rows into a table exactly once per key.

One :class:`DeltaWriter` per table and process keeps its ``DeltaTable`` object and refreshes it
with ``update_incremental()`` (re-opening by URI re-reads the whole log until a checkpoint).
The MERGE predicate matches the partition column and the key, with ``streamed_exec=False`` so
DataFusion prunes partitions; insert-only tables never update, upsert tables coalesce so a staged
null never erases a value, and ``created_at`` keeps the target's. ``CommitFailedError`` (a
concurrent MERGE won) is retried on a reloaded table.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from deltalake import DeltaTable, Field, Schema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import PrimitiveType

from shared import metrics
from shared.config import Settings
from shared.lake.tables import TableSpec, WriteMode, coerce_row, combine_rows
from shared.storage import LakeLocation, StorageFactory

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 8
OPTIONS_REFRESH_SECONDS = 30 * 60  # bearer tokens in storage_options expire after about an hour


class DeltaWriteError(RuntimeError):
    """A MERGE kept losing to concurrent commits; the staged rows stay for the next flush."""


@dataclass(frozen=True, slots=True)
class MergeMetrics:
    table: str
    source_rows: int
    inserted: int
    updated: int
    files_added: int
    files_removed: int
    attempts: int
    version: int
    seconds: float


def delta_schema(spec: TableSpec) -> Schema:
    return Schema(
        [Field(name, PrimitiveType(_delta_type(dtype)), nullable=True) for name, dtype in spec.schema.items()]
    )


def _delta_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone != "UTC":
            raise TypeError("only UTC timestamps are used (timestamp_ntz needs newer Delta writers)")
        return "timestamp"
    mapping: dict[pl.DataType, str] = {
        pl.String(): "string",
        pl.Int64(): "long",
        pl.Int32(): "integer",
        pl.Boolean(): "boolean",
        pl.Float64(): "double",
        pl.Date(): "date",
    }
    try:
        return mapping[dtype]
    except KeyError:
        raise TypeError(f"no Delta type for {dtype}") from None


def _q(column: str) -> str:
    return f'"{column}"'


def merge_predicate(spec: TableSpec) -> str:
    """Partition equality first (prunes files with ``streamed_exec=False``), then the key."""
    columns = [spec.partition, *spec.key] if spec.partition else list(spec.key)
    return " AND ".join(f"t.{_q(c)} = s.{_q(c)}" for c in columns)


def upsert_updates(spec: TableSpec) -> dict[str, str]:
    """Null-preserving updates: a staged null keeps the target value; preserved columns
    (``created_at``) keep the target's unless it is null. For a versioned table the newer row's
    value wins (the older one's for preserved columns), whichever side it is on, so the order in
    which rows reach the table does not matter."""
    fixed = {*spec.key, *([spec.partition] if spec.partition else [])}
    updates: dict[str, str] = {}
    for column in spec.columns:
        if column in fixed:
            continue
        staged_first, target_first = (
            f"coalesce(s.{_q(column)}, t.{_q(column)})",
            f"coalesce(t.{_q(column)}, s.{_q(column)})",
        )
        if spec.version is None:
            updates[column] = target_first if column in spec.preserve_on_update else staged_first
            continue
        v = _q(spec.version)
        if column in spec.preserve_on_update:
            staged_wins = f"t.{v} IS NOT NULL AND s.{v} < t.{v}"  # the staged row is the older one
        else:
            staged_wins = f"t.{v} IS NULL OR s.{v} >= t.{v}"  # the staged row is the newer one
        updates[column] = f"CASE WHEN {staged_wins} THEN {staged_first} ELSE {target_first} END"
    return updates


def update_condition(spec: TableSpec) -> str | None:
    column = spec.update_only_when_changed
    if column is None:
        return None
    c = _q(column)
    return f"s.{c} IS NOT NULL AND (t.{c} IS NULL OR s.{c} <> t.{c})"


class DeltaWriter:
    """Writes one Delta table; thread-safe within a process (one MERGE at a time)."""

    def __init__(
        self,
        spec: TableSpec,
        location: LakeLocation,
        options_factory: Callable[[], Mapping[str, str]],
        ensure_container: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.location = location
        self._options_factory = options_factory
        self._ensure_container = ensure_container
        self._dt: DeltaTable | None = None
        self._options: dict[str, str] | None = None
        self._options_at = 0.0
        self._lock = threading.RLock()

    @classmethod
    def for_table(cls, spec: TableSpec, settings: Settings, storage: StorageFactory) -> DeltaWriter:
        location = LakeLocation.parse(settings.lake_tables_uri).child(spec.name)

        def ensure_container() -> None:
            container = storage.lake_blob_service(location).get_container_client(location.container)
            try:
                if not container.exists():
                    container.create_container()
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:  # OneLake workspaces exist already and refuse creation
                log.warning("could not check or create lake container %s: %s", location.container, exc)

        return cls(spec, location, lambda: storage.delta_storage_options(location), ensure_container)

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def storage_options(self) -> dict[str, str]:
        """Options for readers (polars) of this table, the same as the writer uses."""
        with self._lock:
            now = time.monotonic()
            if self._options is None or now - self._options_at > OPTIONS_REFRESH_SECONDS:
                self._options = dict(self._options_factory())
                self._options_at = now
                self._dt = None  # a reopened table picks up the fresh credentials
            return dict(self._options)

    # -- table lifecycle ------------------------------------------------------------------
    def table(self) -> DeltaTable:
        """The kept ``DeltaTable``, brought up to the latest version (created on first use)."""
        with self._lock:
            options = self.storage_options
            if self._dt is None:
                self._dt = self._open_or_create(options)
            else:
                self._dt.update_incremental()
            return self._dt

    def _open_or_create(self, options: dict[str, str]) -> DeltaTable:
        if self._ensure_container is not None:
            self._ensure_container()  # once per writer: a missing container is not TableNotFound
            self._ensure_container = None
        try:
            return DeltaTable(self.uri, storage_options=options)
        except TableNotFoundError:
            pass
        try:
            DeltaTable.create(
                self.uri,
                schema=delta_schema(self.spec),
                partition_by=[self.spec.partition] if self.spec.partition else None,
                mode="ignore",
                name=self.spec.name,
                storage_options=options,
            )
        except CommitFailedError:  # another process created it first
            log.info("table %s was created concurrently", self.spec.name)
        return DeltaTable(self.uri, storage_options=options)

    def exists(self) -> bool:
        """Whether the Delta table exists, without creating it (compaction of unused tables)."""
        with self._lock:
            if self._dt is not None:
                return True
            options = self.storage_options
        try:
            return bool(DeltaTable.is_deltatable(self.uri, storage_options=options))
        except OSError:  # container missing
            return False

    # -- merge ----------------------------------------------------------------------------
    def merge(self, rows: Iterable[Mapping[str, Any]] | pl.DataFrame) -> MergeMetrics:
        """MERGE rows by key: dedupe first (later non-null values win), retry lost commits."""
        started = time.perf_counter()
        source = self._source_frame(rows)
        if source.is_empty():
            version = self.table().version()
            return MergeMetrics(self.spec.name, 0, 0, 0, 0, 0, 0, version, 0.0)
        with self._lock:
            for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
                dt = self.table()
                try:
                    result = self._execute(dt, source)
                except CommitFailedError as exc:
                    metrics.COMMIT_CONFLICTS.add(table=self.spec.name)
                    if attempt == MAX_COMMIT_ATTEMPTS:
                        raise DeltaWriteError(
                            f"{self.spec.name}: MERGE lost {attempt} commits in a row: {exc}"
                        ) from exc
                    delay = min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5)
                    log.info("%s: concurrent commit, retrying MERGE in %.2fs", self.spec.name, delay)
                    time.sleep(delay)
                    continue
                return MergeMetrics(
                    table=self.spec.name,
                    source_rows=source.height,
                    inserted=int(result.get("num_target_rows_inserted", 0)),
                    updated=int(result.get("num_target_rows_updated", 0)),
                    files_added=int(result.get("num_target_files_added", 0)),
                    files_removed=int(result.get("num_target_files_removed", 0)),
                    attempts=attempt,
                    version=dt.version(),
                    seconds=time.perf_counter() - started,
                )
        raise AssertionError("unreachable")

    def _source_frame(self, rows: Iterable[Mapping[str, Any]] | pl.DataFrame) -> pl.DataFrame:
        if isinstance(rows, pl.DataFrame):
            # Frames are trusted to carry the spec's columns; duplicates keep the last row (of the
            # highest version, for a versioned table).
            frame = rows.select([pl.col(c).cast(t) for c, t in self.spec.schema.items()])
            if self.spec.version is not None:
                frame = frame.sort(self.spec.version, maintain_order=True)
            return frame.unique(subset=list(self.spec.key), keep="last", maintain_order=True)
        combined = combine_rows(self.spec, (coerce_row(self.spec, r) for r in rows))
        return self.spec.to_frame(combined)

    def _execute(self, dt: DeltaTable, source: pl.DataFrame) -> dict[str, Any]:
        merger = dt.merge(
            source,
            predicate=merge_predicate(self.spec),
            source_alias="s",
            target_alias="t",
            streamed_exec=False,
        )
        if self.spec.mode is WriteMode.UPSERT:
            merger = merger.when_matched_update(
                upsert_updates(self.spec), predicate=update_condition(self.spec)
            )
        result: dict[str, Any] = merger.when_not_matched_insert_all().execute()
        return result
