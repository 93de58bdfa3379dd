"""Delta table specs: one ordered schema, merge key, partition and write mode per lakehouse table.

Staging, the Delta writer and the flush all read these specs, so a table's shape is declared once.
Rows travel as plain dicts (column -> python value); :func:`coerce_row` checks and normalises them
when they are staged, so a bad row fails in the activity that produced it, never in the flush.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import polars as pl

Row = dict[str, Any]

# Column types the specs use (Delta: string, date, long, integer, boolean, double, timestamp).
STRING: pl.DataType = pl.String()
DATE: pl.DataType = pl.Date()
INT64: pl.DataType = pl.Int64()
INT32: pl.DataType = pl.Int32()
BOOLEAN: pl.DataType = pl.Boolean()
FLOAT64: pl.DataType = pl.Float64()
UTC_TS: pl.DataType = pl.Datetime("us", "UTC")
_TABLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class WriteMode(StrEnum):
    """How staged rows land in Delta."""

    INSERT_ONLY = "insert_only"  # append-style tables: a key seen once is never written again
    UPSERT = "upsert"  # entity tables: null-preserving update + insert


@dataclass(frozen=True)
class TableSpec:
    """One Delta table: ordered schema, merge key, optional partition column, write mode.

    The partition column must be a function of the key (the MERGE predicate matches on both),
    so key and partition are required on every row.

    ``version`` (upsert tables) names a column that orders the rows of one key, such as the time of
    the event a row describes. Each column then takes the non-null value of the highest version,
    and ``preserve_on_update`` columns that of the lowest, whatever order rows are staged, flushed
    or merged in (docs/architecture.md, section 8). Without it, later rows win.
    """

    name: str
    schema: pl.Schema
    key: tuple[str, ...]
    partition: str | None = None
    mode: WriteMode = WriteMode.INSERT_ONLY
    update_only_when_changed: str | None = None
    preserve_on_update: tuple[str, ...] = ("created_at",)
    large_text: frozenset[str] = field(default_factory=frozenset)
    version: str | None = None

    def __hash__(self) -> int:  # pl.Schema is unhashable; the name identifies a registered table
        return hash(self.name)

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _TABLE_NAME_CHARS:
            raise ValueError(f"table name must be [a-z0-9_]+, got {self.name!r}")
        missing = [c for c in (*self.key, self.partition, self.update_only_when_changed, self.version) if c]
        unknown = [c for c in missing if c not in self.schema]
        unknown += [c for c in self.large_text if self.schema.get(c) != pl.String]
        if not self.key or unknown:
            raise ValueError(f"{self.name}: key/partition/text columns not in schema: {unknown}")
        if self.version is not None and self.mode is not WriteMode.UPSERT:
            raise ValueError(f"{self.name}: only upsert tables have a version column")

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names())

    @property
    def required(self) -> tuple[str, ...]:
        """Columns that must be non-null: a null key or partition would defeat the MERGE match."""
        extra = tuple(c for c in (self.partition, self.version) if c)
        return (*self.key, *extra)

    def key_of(self, row: Mapping[str, Any]) -> str:
        """The merge key as one string (JSON list for compound keys, so parts cannot collide)."""
        values = [row.get(c) for c in self.key]
        if any(v is None for v in values):
            raise ValueError(f"{self.name}: key {self.key} has a null in {values}")
        if len(values) == 1:
            return _key_text(values[0])
        return json.dumps([_key_text(v) for v in values], separators=(",", ":"))

    def staging_key_of(self, row: Mapping[str, Any]) -> str:
        """The key of a staged entity: the merge key, and the version for a versioned table (each
        version is its own entity until the flush folds them, so no write order matters)."""
        key = self.key_of(row)
        if self.version is None:
            return key
        return json.dumps([key, _key_text(row[self.version])], separators=(",", ":"))

    def to_frame(self, rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
        return rows_to_frame(self, rows)


def _key_text(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# -- value coercion ------------------------------------------------------------------------


def coerce_value(dtype: pl.DataType, value: Any, column: str = "?") -> Any:
    """``value`` as the python type polars expects for ``dtype`` (None stays None)."""
    if value is None:
        return None
    if dtype == pl.String:
        if isinstance(value, str):
            return value if type(value) is str else str(value)  # StrEnum -> its plain value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    elif dtype in (pl.Int64, pl.Int32):
        if isinstance(value, int) and not isinstance(value, bool):
            limit = 2**63 if dtype == pl.Int64 else 2**31
            if -limit <= value < limit:
                return int(value)  # IntEnum and other int subclasses -> plain int
            raise ValueError(f"column {column}: {value} does not fit {dtype}")
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return coerce_value(dtype, int(value), column)
    elif dtype == pl.Boolean:
        if isinstance(value, bool):
            return value
    elif dtype == pl.Float64:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif dtype == pl.Date:
        if isinstance(value, datetime):
            return _utc(value).date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            return date.fromisoformat(value)
    elif isinstance(dtype, pl.Datetime):
        if isinstance(value, datetime):
            return _utc(value)
        if isinstance(value, str):
            return _utc(datetime.fromisoformat(value))
    else:
        raise TypeError(f"column {column}: unsupported column type {dtype}")
    raise TypeError(f"column {column}: {type(value).__name__} {value!r} is not a {dtype}")


def _utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (the whole pipeline speaks UTC)."""
    if type(value) is not datetime:  # e.g. the Tables SDK's TablesEntityDatetime subclass
        value = datetime(*value.timetuple()[:6], value.microsecond, tzinfo=value.tzinfo)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def coerce_row(spec: TableSpec, row: Mapping[str, Any]) -> Row:
    unknown = [c for c in row if c not in spec.schema]
    if unknown:
        raise ValueError(f"{spec.name}: unknown columns {unknown}")
    out = {c: coerce_value(spec.schema[c], v, c) for c, v in row.items()}
    missing = [c for c in spec.required if out.get(c) is None]
    if missing:
        raise ValueError(f"{spec.name}: required columns are null or missing: {missing}")
    return out


def combine_rows(
    spec: TableSpec,
    rows: Iterable[Mapping[str, Any]],
    *,
    by: Callable[[Mapping[str, Any]], str] | None = None,
) -> list[Row]:
    """One row per key (``by``: the merge key by default), in first-seen order: later non-null
    values win, or, for a versioned table, the non-null values of the highest version (of the
    lowest for ``preserve_on_update`` columns), so the order of ``rows`` does not matter."""
    key_of = by or spec.key_of
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(key_of(row), []).append(row)
    return [_fold(spec, group) for group in groups.values()]


def _fold(spec: TableSpec, rows: list[Mapping[str, Any]]) -> Row:
    if spec.version is None:
        merged: Row = {}
        for row in rows:
            merged.update({c: v for c, v in row.items() if v is not None or c not in merged})
        return merged
    version = spec.version
    ordered = sorted(rows, key=lambda r: (r[version], _row_order(r)))  # ascending: the newest last
    newest_wins: Row = {}
    oldest_wins: Row = {}
    for row in ordered:
        for column, value in row.items():
            if value is None:
                newest_wins.setdefault(column, None)
                continue
            newest_wins[column] = value
            if oldest_wins.get(column) is None:
                oldest_wins[column] = value
    return {c: oldest_wins.get(c) if c in spec.preserve_on_update else v for c, v in newest_wins.items()}


def _row_order(row: Mapping[str, Any]) -> str:
    """A total order for rows of one version (one event's rows are the same; this breaks ties
    between different ones the same way in every process)."""
    return json.dumps({c: _key_text(v) for c, v in sorted(row.items()) if v is not None})


def rows_to_frame(spec: TableSpec, rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """A DataFrame with exactly the spec's columns, order and types; missing columns are null."""
    materialised = [coerce_row(spec, r) for r in rows]
    data = {c: [r.get(c) for r in materialised] for c in spec.columns}
    return pl.DataFrame(data, schema=spec.schema, strict=True)


# -- the catalog ---------------------------------------------------------------------------


class TableCatalog:
    """Every lakehouse table of the app, by name. The composition declares it once (the domains'
    specs together); flush, compaction and the run report walk it."""

    def __init__(self, specs: Iterable[TableSpec]) -> None:
        self._specs: dict[str, TableSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"table {spec.name} is declared twice")
            self._specs[spec.name] = spec

    def __iter__(self) -> Iterator[TableSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def spec(self, name: str) -> TableSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown table {name!r}; known: {sorted(self._specs)}") from None
