"""Staging: one Azure Table entity per (Delta table, merge key), or per (table, key, version) for a
versioned table, flushed into Delta by a timer.

Activities upsert rows in MERGE mode with nulls omitted, so staging is idempotent by key and later
non-null values win. Rows are spread over ``table_shards`` partitions by a stable hash of the key
(one Table partition serves ~2,000 entities/s). The flush reads every shard of a table, merges the
rows into Delta, then deletes each entity only if its etag is unchanged: a row updated during the
flush stays for the next one.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from shared.lake.tables import UTC_TS, Row, TableSpec, WriteMode, coerce_row, coerce_value, combine_rows
from shared.pool import IoPool
from shared.state.sharding import partition_key, safe_row_key, shard_of

log = logging.getLogger(__name__)

# Azure Table limits (Azurite enforces none of them, so they are checked here before any request).
MAX_BATCH = 100  # entities in one transaction
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024 - 64 * 1024  # 4 MiB a transaction, less the multipart framing
MAX_ENTITY_BYTES = 1024 * 1024  # by Azure's size formula, and as the JSON of one entity's request
MAX_PROPERTY_BYTES = 64 * 1024
MAX_PROPERTIES = 252  # 255 less PartitionKey, RowKey and Timestamp
EARLIEST_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)
LATEST_DATETIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_OPERATION_OVERHEAD = 1024  # one operation's headers in the multipart body
_TYPE_ANNOTATION = 40  # '"<name>@odata.type": "Edm.DateTime",' beyond the name itself
_ORIGIN_PROPERTIES = 2  # the origin's two properties, added at staging (Origin)
_ORIGIN_ROOM = 256  # their size, kept free by the checks
KEY_PROPERTY = "CfKey"  # the real merge key; the RowKey may be escaped or hashed
ENQUEUED_PROPERTY = "CfEnqueuedAt"  # when the row's event was enqueued (the app's clock)
RECEIVED_PROPERTY = "CfReceivedWall"  # when ingest received it (wall clock, epoch seconds)
_CHUNK_COUNT = "__n"
_CHUNK_CHARS = 16_000  # 64 KiB per string property, UTF-16: safe even if every char is a pair


@dataclass(frozen=True, slots=True)
class Origin:
    """When a row's event entered the pipeline, so the flush can measure freshness: the Event Hub
    enqueue time (the app's clock, virtual under the local host) and the wall-clock time ingest
    received it. Travels with the event through orchestration inputs as :meth:`to_dict`."""

    enqueued_at: datetime
    received_wall: float

    def to_dict(self) -> dict[str, Any]:
        return {"enqueued_at": self.enqueued_at.isoformat(), "received_wall": self.received_wall}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Origin | None:
        if not data:
            return None
        return cls(datetime.fromisoformat(data["enqueued_at"]), float(data["received_wall"]))


@dataclass(frozen=True, slots=True)
class StagedRow:
    """One staged entity as read by the flush; ``etag`` guards its delete."""

    table: str
    key: str
    values: Row
    etag: str
    partition_key: str
    row_key: str
    origin: Origin | None = None
    staged_at: datetime | None = None  # the storage service's last-write time of the entity


@dataclass(slots=True)
class StagingTable:
    """The staging Azure Table. Sync API: activities call it from worker threads."""

    service: TableServiceClient
    pool: IoPool
    table_name: str
    shards: int = 16
    _client: TableClient | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> TableClient:
        if self._client is None:
            self._client = self.service.create_table_if_not_exists(self.table_name)
        return self._client

    # -- writing --------------------------------------------------------------------------
    def stage_many(
        self, spec: TableSpec, rows: Iterable[Mapping[str, Any]], *, origin: Origin | None = None
    ) -> int:
        """Upsert rows in transactions per partition; returns the entities written.

        Rows with the same key are combined first (a transaction may not touch an entity twice).
        A row no entity can hold raises :class:`UnstageableRow` before anything is written.
        ``origin`` (when the rows' events entered the pipeline) is kept beside the row for the
        flush's freshness measurement.
        """
        combined = combine_rows(spec, (_coerced(spec, r) for r in rows), by=spec.staging_key_of)
        return self.stage_entities(spec, [self._entity(spec, row) for row in combined], origin=origin)

    def encode(self, spec: TableSpec, row: Mapping[str, Any]) -> dict[str, Any]:
        """The entity for one row, checked against the Table limits without any request; raises
        :class:`UnstageableRow`. Lets a caller find the rows of one batch that cannot be staged
        and stage the rest with :meth:`stage_entities`."""
        return self._entity(spec, _coerced(spec, row))

    def stage_entities(
        self,
        spec: TableSpec,
        entities: Sequence[dict[str, Any]],
        *,
        together: bool = False,
        origin: Origin | None = None,
    ) -> int:
        """Upsert encoded entities (distinct keys): per partition, transactions of at most 100
        entities and 4 MiB. ``origin`` as for :meth:`stage_many` (its two properties fit the room
        :func:`check_entity` keeps for them).

        ``together`` (insert-only tables only) stages them all in one partition, the shard of their
        smallest key, so a batch is one transaction instead of one per shard. That is safe where a
        key's first row wins: the flush reads every shard and folds a key staged twice in two
        partitions, and an insert-only MERGE never updates a key it has."""
        if together and entities:
            if spec.mode is not WriteMode.INSERT_ONLY:
                raise ValueError(f"{spec.name}: only insert-only rows may be staged together")
            first = min(entities, key=lambda entity: str(entity[KEY_PROPERTY]))
            shared = partition_key(spec.name, shard_of(str(first[KEY_PROPERTY]), self.shards))
            entities = [{**entity, "PartitionKey": shared} for entity in entities]
        if origin is not None:
            stamp = {ENQUEUED_PROPERTY: origin.enqueued_at, RECEIVED_PROPERTY: origin.received_wall}
            entities = [{**entity, **stamp} for entity in entities]
        by_partition: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entity in entities:
            by_partition[entity["PartitionKey"]].append(entity)
        batches = [batch for group in by_partition.values() for batch in _transactions(group)]
        self.pool.map(self._submit_upserts, batches)
        return len(entities)

    def _submit_upserts(self, entities: list[dict[str, Any]]) -> None:
        if len(entities) == 1:
            self.client.upsert_entity(entities[0], mode=UpdateMode.MERGE)
        else:
            self.client.submit_transaction([("upsert", e, {"mode": UpdateMode.MERGE}) for e in entities])

    def _entity(self, spec: TableSpec, row: Row) -> dict[str, Any]:
        key = spec.key_of(row)
        entity: dict[str, Any] = {
            "PartitionKey": partition_key(spec.name, shard_of(key, self.shards)),
            "RowKey": safe_row_key(spec.staging_key_of(row)),
            KEY_PROPERTY: key,
        }
        for column, value in row.items():
            if value is None:
                continue  # MERGE mode: an omitted property keeps the staged value
            entity.update(_encode(spec, column, value))
        check_entity(spec, entity)
        return entity

    # -- reading --------------------------------------------------------------------------
    def read(self, spec: TableSpec, limit: int) -> list[StagedRow]:
        """Up to ``limit`` rows from every shard of the table, a fair share from each shard first
        so a busy shard cannot starve the others."""
        if limit <= 0:
            return []
        quota = max(1, math.ceil(limit / self.shards))
        pagers = [self._pages(spec, shard, min(quota, 1000)) for shard in range(self.shards)]
        first = self.pool.map(lambda p: next(p, []), pagers)
        rows: list[StagedRow] = []
        leftovers: list[tuple[Iterator[list[StagedRow]], list[StagedRow]]] = []
        for pager, page in zip(pagers, first, strict=True):
            rows.extend(page[:quota])
            leftovers.append((pager, page[quota:]))
        for pager, extra in leftovers:
            if len(rows) >= limit:
                break
            rows.extend(extra[: limit - len(rows)])
            for page in pager:
                if len(rows) >= limit:
                    break
                rows.extend(page[: limit - len(rows)])
        return rows[:limit]

    def _pages(self, spec: TableSpec, shard: int, page_size: int) -> Iterator[list[StagedRow]]:
        pk = partition_key(spec.name, shard)
        pages = self.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": pk}, results_per_page=page_size
        ).by_page()
        for page in pages:
            yield [self._decode(spec, entity) for entity in page]

    def _decode(self, spec: TableSpec, entity: Mapping[str, Any]) -> StagedRow:
        values: Row = {}
        for column, dtype in spec.schema.items():
            raw = _raw_value(entity, column, column in spec.large_text)
            if raw is not None:
                values[column] = coerce_value(dtype, raw, column)
        metadata: dict[str, Any] = getattr(entity, "metadata", {})
        enqueued, received = entity.get(ENQUEUED_PROPERTY), entity.get(RECEIVED_PROPERTY)
        origin = None
        if isinstance(enqueued, datetime) and received is not None:
            received_wall = float(_raw_value(entity, RECEIVED_PROPERTY, False))
            origin = Origin(coerce_value(UTC_TS, enqueued), received_wall)
        staged_at = metadata.get("timestamp")
        return StagedRow(
            table=spec.name,
            key=str(entity[KEY_PROPERTY]),
            values=values,
            etag=str(metadata["etag"]),
            partition_key=str(entity["PartitionKey"]),
            row_key=str(entity["RowKey"]),
            origin=origin,
            staged_at=coerce_value(UTC_TS, staged_at) if isinstance(staged_at, datetime) else None,
        )

    def find(self, spec: TableSpec, key: str) -> StagedRow | None:
        """The staged row of one merge key, if it is still waiting for a flush. Rows staged
        ``together`` may sit in any shard of their table: those are looked for in all of them."""
        try:
            entity = self.client.get_entity(
                partition_key(spec.name, shard_of(key, self.shards)), safe_row_key(key)
            )
        except ResourceNotFoundError:
            if spec.mode is not WriteMode.INSERT_ONLY:
                return None
            found = self.client.query_entities(
                "PartitionKey ge @lo and PartitionKey lt @hi and RowKey eq @row",
                parameters={"lo": f"{spec.name}:", "hi": f"{spec.name};", "row": safe_row_key(key)},
            )
            match = next(iter(found), None)
            if match is None:
                return None
            return self._decode(spec, match)
        return self._decode(spec, entity)

    def count(self, spec: TableSpec) -> int:
        """Staged rows of a table, over every partition the table ever used."""
        name = spec.name
        entities = self.client.query_entities(
            "PartitionKey ge @lo and PartitionKey lt @hi",
            parameters={"lo": f"{name}:", "hi": f"{name};"},
            select=["PartitionKey"],
            results_per_page=1000,
        )
        return sum(1 for _ in entities)

    # -- deleting -------------------------------------------------------------------------
    def delete_if_unchanged(self, rows: Iterable[StagedRow]) -> int:
        """Delete each row only if its etag is unchanged; returns how many were deleted.

        Batches per partition (atomic, etag-conditional); a batch that fails because one row
        changed or vanished falls back to per-row deletes so the others still go.
        """
        by_partition: dict[str, list[StagedRow]] = defaultdict(list)
        for row in rows:
            by_partition[row.partition_key].append(row)
        batches = [
            group[i : i + MAX_BATCH]
            for group in by_partition.values()
            for i in range(0, len(group), MAX_BATCH)
        ]
        return sum(self.pool.map(self._delete_batch, batches))

    def _delete_batch(self, batch: list[StagedRow]) -> int:
        if len(batch) > 1:
            operations = [
                (
                    "delete",
                    {"PartitionKey": r.partition_key, "RowKey": r.row_key},
                    {"etag": r.etag, "match_condition": MatchConditions.IfNotModified},
                )
                for r in batch
            ]
            try:
                self.client.submit_transaction(operations)
                return len(batch)
            except TableTransactionError as exc:
                log.debug("staging batch delete fell back to single deletes: %s", str(exc)[:200])
        return sum(self._delete_one(r) for r in batch)

    def _delete_one(self, row: StagedRow) -> int:
        try:
            self.client.delete_entity(
                row.partition_key, row.row_key, etag=row.etag, match_condition=MatchConditions.IfNotModified
            )
            return 1
        except ResourceModifiedError:
            return 0  # updated during the flush: the next flush merges the newer values
        except ResourceNotFoundError:
            return 0  # already deleted by a concurrent flush


# -- property encoding and the Table limits ---------------------------------------------------


class UnstageableRow(ValueError):
    """A row no Azure Table entity can hold: a value of the wrong type, a property over 64 KiB, an
    entity over 1 MiB or 252 properties, a date Azure Tables cannot keep."""


def _coerced(spec: TableSpec, row: Mapping[str, Any]) -> Row:
    try:
        return coerce_row(spec, row)
    except (TypeError, ValueError) as exc:
        raise UnstageableRow(str(exc)) from None


def _utf16_units(text: str) -> int:
    """UTF-16 code units of ``text``; a lone surrogate (not Unicode text: no UTF-8 store, Delta
    included, takes it) raises :class:`UnstageableRow`."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-16-le")) // 2
    except UnicodeEncodeError as exc:
        raise UnstageableRow(f"text with a lone UTF-16 surrogate at character {exc.start}") from None


def _value_size(value: Any) -> int:
    """Bytes of one property value as Azure counts them (strings in UTF-16)."""
    if isinstance(value, EntityProperty):
        return 8 if value.edm_type in (EdmType.INT64, EdmType.DOUBLE, EdmType.DATETIME) else 4
    if isinstance(value, str):
        return 4 + 2 * _utf16_units(value)
    if isinstance(value, bool):
        return 1
    return 8  # datetime, float


def entity_size(entity: Mapping[str, Any], *, spec: TableSpec | None = None) -> int:
    """An entity's size by Azure's formula: 4 bytes, the keys in UTF-16, and per property 8 bytes,
    its name in UTF-16 and its value. With ``spec``, a string property over 64 KiB raises
    :class:`UnstageableRow`."""
    size = 4 + 2 * (_utf16_units(entity["PartitionKey"]) + _utf16_units(entity["RowKey"]))
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        value_size = _value_size(value)
        if spec is not None and value_size - 4 > MAX_PROPERTY_BYTES and isinstance(value, str):
            raise UnstageableRow(
                f"{spec.name}.{name} holds {(value_size - 4) // 2} UTF-16 units; a Table property "
                f"holds {MAX_PROPERTY_BYTES // 2}"
            )
        size += 8 + 2 * _utf16_units(name) + value_size
    return size


def request_size(entity: Mapping[str, Any]) -> int:
    """Bytes of the entity's JSON as the Tables SDK sends it (every non-ASCII UTF-16 unit escaped
    to six bytes; typed values annotated), rounded up."""
    plain: dict[str, Any] = {}
    annotations = 0
    for name, value in entity.items():
        if isinstance(value, EntityProperty):
            plain[name] = str(value.value)
        elif isinstance(value, datetime):
            plain[name] = value.isoformat()
        else:
            plain[name] = value
            continue
        annotations += len(name) + _TYPE_ANNOTATION
    return len(json.dumps(plain)) + annotations


def check_entity(spec: TableSpec, entity: Mapping[str, Any]) -> int:
    """The entity's request size; raises :class:`UnstageableRow` over the Table limits: the size
    by Azure's formula (UTF-16) and the size of the request that carries it (the emulator, like
    the service, refuses an entity's request over 1 MiB) must each stay within 1 MiB."""
    if len(entity) - 2 + _ORIGIN_PROPERTIES > MAX_PROPERTIES:
        needed = len(entity) - 2
        raise UnstageableRow(f"{spec.name} row needs {needed} properties; an entity holds {MAX_PROPERTIES}")
    size = entity_size(entity, spec=spec) + _ORIGIN_ROOM
    if size > MAX_ENTITY_BYTES:
        raise UnstageableRow(f"{spec.name} row of {size} bytes exceeds a Table entity's {MAX_ENTITY_BYTES}")
    request = request_size(entity) + _ORIGIN_ROOM
    if request > MAX_ENTITY_BYTES:
        raise UnstageableRow(f"{spec.name} row's request of {request} bytes exceeds {MAX_ENTITY_BYTES}")
    return request


def _transactions(entities: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Entities of one partition in transactions within both limits (100 entities, 4 MiB)."""
    batch: list[dict[str, Any]] = []
    payload = 0
    for entity in entities:
        share = request_size(entity) + _OPERATION_OVERHEAD
        if batch and (len(batch) == MAX_BATCH or payload + share > MAX_TRANSACTION_BYTES):
            yield batch
            batch, payload = [], 0
        batch.append(entity)
        payload += share
    if batch:
        yield batch


def _encode(spec: TableSpec, column: str, value: Any) -> dict[str, Any]:
    """Table properties for one column. Dates travel as ISO text and come back through the spec;
    int64 needs an explicit EDM type; long text columns are split into chunk properties."""
    dtype = spec.schema[column]
    if column in spec.large_text:
        text = str(value)
        parts = [text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)] or [""]
        encoded: dict[str, Any] = {f"{column}{_CHUNK_COUNT}": len(parts)}
        encoded.update({f"{column}__{i}": part for i, part in enumerate(parts)})
        return encoded
    if isinstance(value, str | bool):
        return {column: value}
    if isinstance(value, int):
        edm = EdmType.INT64 if dtype == pl.Int64 else EdmType.INT32
        return {column: EntityProperty(value, edm)}
    if isinstance(value, datetime):
        if not EARLIEST_DATETIME <= value <= LATEST_DATETIME:
            raise UnstageableRow(
                f"{spec.name}.{column}: {value.isoformat()} is outside what Azure Tables keep"
            )
        return {column: value}
    if isinstance(value, date):
        return {column: value.isoformat()}
    return {column: value}


def _raw_value(entity: Mapping[str, Any], column: str, large: bool) -> Any:
    if large:
        count = entity.get(f"{column}{_CHUNK_COUNT}")
        if count is None:
            return None
        count = count.value if isinstance(count, EntityProperty) else count
        return "".join(str(entity[f"{column}__{i}"]) for i in range(int(count)))
    value = entity.get(column)
    return value.value if isinstance(value, EntityProperty) else value
