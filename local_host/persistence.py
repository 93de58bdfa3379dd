"""Durable state in Azure Storage (Azurite locally), written so that a process killed at any
instant leaves storage consistent.

Layout: one table, ``<hub>Orchestrations``, partitioned like the Azure Storage provider's control
queues (``partitionCount`` of host.json; an instance's partition is the FNV-1a hash of its id).
Each instance has one row, ``I|<instance id>`` (status, input, output, custom status and the
host's replay state, inbox included), and one history row per episode,
``H|<instance id>|<execution id>|<n>`` holding that episode's events. A partition row
``hub|clock`` keeps the virtual clock. Values over the Table property limit go to blobs in
``<hub>-largemessages`` under content-derived names, uploaded before the row that names them.

Every write of an instance is ONE entity-group transaction: the new history row and the
instance row commit together or not at all, so a kill can never leave history without the state
that consumed it (or the reverse), and an event is never recorded twice. Writes that wait at the
same time are grouped per partition into one transaction (at most 100 entities and 4 MiB; an
episode is two entities of at most ~0.5 MiB each, so every episode fits).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import aiohttp
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from shared.storage import parse_connection_string

from .history import Event
from .table_batch import MAX_OPERATIONS, TableBatchClient, TableBatchError, TableOperation

log = logging.getLogger("local_host.persistence")

# A Table string property holds 64 KiB of UTF-16; keep headroom for the rest of the entity.
_MAX_PROPERTY_BYTES = 60_000
_MAX_TRANSACTION_BYTES = 3 * 1024 * 1024  # under the 4 MiB limit, with room for the envelope
_LARGE_FIELDS = ("Input", "Output", "CustomStatus", "State")
_COMMIT_ATTEMPTS = 4
UNFINISHED_STATUSES = ("Pending", "Running", "Suspended")
HUB_PARTITION = "hub"
INSTANCE_PREFIX, HISTORY_PREFIX = "I|", "H|"


def _too_large(value: str) -> bool:
    return len(value) * 4 > _MAX_PROPERTY_BYTES and len(value.encode("utf-16-le")) > _MAX_PROPERTY_BYTES


def _after(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def fnv1a(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def encode_continuation(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def decode_continuation(token: str | None) -> Any:
    if not token:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise ValueError("invalid x-ms-continuation-token") from exc


class InstanceConflict(Exception):
    """An instance row that was to be created exists already."""


@dataclass(frozen=True)
class InstanceRecord:
    """The stored row of one instance, large values resolved, ``State`` parsed."""

    row: dict[str, Any]

    @property
    def instance_id(self) -> str:
        return str(self.row["InstanceId"])

    @property
    def runtime_status(self) -> str:
        return str(self.row["RuntimeStatus"])

    @property
    def execution_id(self) -> str:
        return str(self.row["ExecutionId"])

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.row["State"])


@dataclass(frozen=True)
class InstanceQuery:
    """Filters of the list and bulk-purge routes."""

    runtime_status: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    instance_id_prefix: str | None = None

    def to_filter(self) -> tuple[str, dict[str, Any]]:
        prefix = INSTANCE_PREFIX + (self.instance_id_prefix or "")
        params: dict[str, Any] = {"rfrom": prefix, "rto": _after(prefix)}
        clauses = ["RowKey ge @rfrom and RowKey lt @rto"]
        if self.runtime_status:
            options = []
            for i, status in enumerate(self.runtime_status):
                params[f"s{i}"] = status
                options.append(f"RuntimeStatus eq @s{i}")
            clauses.append("(" + " or ".join(options) + " )")  # the SDK substitutes @names split on spaces
        if self.created_from is not None:
            params["cfrom"] = self.created_from
            clauses.append("CreatedTime ge @cfrom")
        if self.created_to is not None:
            params["cto"] = self.created_to
            clauses.append("CreatedTime le @cto")
        return " and ".join(clauses), params


@dataclass
class InstanceWrite:
    """One atomic write of an instance: its row, and the history row of the episode it records."""

    instance_row: dict[str, Any]
    history_row: dict[str, Any] | None = None
    create: bool = False  # the instance must not exist yet
    blobs: dict[str, str] = field(default_factory=dict)  # large values to upload first

    @cached_property
    def operations(self) -> list[TableOperation]:
        ops = [TableOperation("upsert", self.history_row)] if self.history_row else []
        ops.append(TableOperation("insert" if self.create else "upsert", self.instance_row))
        return ops

    @cached_property
    def size(self) -> int:
        """Bytes this write adds to a transaction (JSON escapes can grow text up to 6 times)."""
        return sum(len(op.body) for op in self.operations)


@dataclass
class _Pending:
    write: InstanceWrite
    done: asyncio.Future[None]


@dataclass
class WriteCounters:
    """Storage writes the host made (the benchmark reports them per episode)."""

    transactions: int = 0
    entities: int = 0
    instance_writes: int = 0


class _PartitionWriter:
    """Groups the instance writes waiting for one partition into transactions (group commit)."""

    def __init__(
        self,
        batches: TableBatchClient,
        before_commit: Callable[[], Any],
        counters: WriteCounters,
        on_committed: Callable[[str], None],
    ) -> None:
        self._batches = batches
        self._before_commit = before_commit
        self._counters = counters
        self._on_committed = on_committed
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, write: InstanceWrite) -> None:
        pending = _Pending(write, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await pending.done

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        keys: set[tuple[str, str]] = set()
        count = size = 0
        while self._queue:
            item = self._queue[0]
            ops = item.write.operations
            item_keys = {op.keys for op in ops}
            item_size = item.write.size
            if taken and (
                count + len(ops) > MAX_OPERATIONS
                or size + item_size > _MAX_TRANSACTION_BYTES
                or keys & item_keys
            ):
                break
            taken.append(self._queue.pop(0))
            keys |= item_keys
            count += len(ops)
            size += item_size
        return taken

    async def _flush(self) -> None:
        while self._queue:
            batch = self._take()
            try:
                await self._before_commit()
                await self._commit(batch)
            except BaseException as exc:  # hand every failure to the writers waiting for it
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

    async def _commit(self, batch: list[_Pending]) -> None:
        """One transaction for the batch; a conflict on a create fails that write alone."""
        while batch:
            operations = [op for item in batch for op in item.write.operations]
            try:
                await self._submit(operations)
            except TableBatchError as exc:
                culprit = self._culprit(batch, exc)
                if culprit is None:
                    raise
                batch.remove(culprit)
                culprit.done.set_exception(
                    InstanceConflict(culprit.write.instance_row["InstanceId"])
                    if exc.code == "EntityAlreadyExists"
                    else exc
                )
                continue
            self._counters.transactions += 1
            self._counters.entities += len(operations)
            for item in batch:
                self._counters.instance_writes += 1
                self._on_committed(item.write.instance_row["InstanceId"])
                item.done.set_result(None)
            return

    @staticmethod
    def _culprit(batch: list[_Pending], exc: TableBatchError) -> _Pending | None:
        if exc.index is None or exc.status >= 500:
            return None
        position = 0
        for item in batch:
            position += len(item.write.operations)
            if exc.index < position:
                return item
        return None

    async def _submit(self, operations: list[TableOperation]) -> None:
        """Submit, retrying what may be transient (a connection reset, a 5xx)."""
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                await self._batches.submit(operations)
                return
            except TableBatchError as exc:
                if exc.status < 500 or attempt == _COMMIT_ATTEMPTS:
                    raise
            except (OSError, TimeoutError, aiohttp.ClientError):
                if attempt == _COMMIT_ATTEMPTS:
                    raise
            await asyncio.sleep(0.05 * 2**attempt)


class DurableStore:
    """The task hub's table and large-message container."""

    def __init__(self, connection_string: str, task_hub: str, *, partition_count: int) -> None:
        values = parse_connection_string(connection_string)
        if "AccountKey" not in values:
            raise ValueError("the local host needs a storage connection string with an account key")
        self.task_hub = task_hub
        self.partition_count = partition_count
        self.table_name = f"{task_hub}Orchestrations"
        self.counters = WriteCounters()
        self._connection_string = ";".join(f"{k}={v}" for k, v in values.items())
        self._tables = TableServiceClient.from_connection_string(self._connection_string)
        self._blobs = BlobServiceClient.from_connection_string(self._connection_string)
        self._table: TableClient = self._tables.get_table_client(self.table_name)
        self._large: ContainerClient = self._blobs.get_container_client(f"{task_hub.lower()}-largemessages")
        self._batches = TableBatchClient(self._connection_string, self.table_name)
        self._writers: dict[str, _PartitionWriter] = {}
        self._uploaded: set[str] = set()
        self._before_commit: Callable[[], Any] = _nothing
        self.on_committed: Callable[[str], None] = lambda instance_id: None

    @property
    def connection_string(self) -> str:
        return self._connection_string

    async def open(self, before_commit: Callable[[], Any] | None = None) -> None:
        """Create the table and container; ``before_commit`` runs before every transaction."""
        if before_commit is not None:
            self._before_commit = before_commit
        with contextlib.suppress(ResourceExistsError):
            await self._table.create_table()
        with contextlib.suppress(ResourceExistsError):
            await self._large.create_container()

    async def close(self) -> None:
        await self._batches.close()
        await self._table.close()
        await self._tables.close()
        await self._blobs.close()

    def partition_of(self, instance_id: str) -> str:
        return f"{fnv1a(instance_id) % self.partition_count:02d}"

    # -- rows -----------------------------------------------------------------------------------

    def _spill(
        self, entity: dict[str, Any], key: str, value: str | None, owner: str, write: InstanceWrite
    ) -> None:
        """Put ``value`` in the entity, or in a blob named after its content when it is too large."""
        if value is None:
            return
        if _too_large(value):
            digest = hashlib.sha256(value.encode()).hexdigest()[:32]
            blob_name = f"{owner}/{key.lower()}-{digest}"
            write.blobs[blob_name] = value
            entity[f"{key}BlobName"] = blob_name
        else:
            entity[key] = value

    def instance_write(
        self,
        *,
        instance_id: str,
        fields: dict[str, Any],
        large: dict[str, str | None],
        history: tuple[str, int, Sequence[Event]] | None,
        create: bool = False,
    ) -> InstanceWrite:
        """Build the atomic write of one instance: its row (``fields`` plus ``large`` values) and
        optionally a history row (execution id, row number, events)."""
        partition = self.partition_of(instance_id)
        row: dict[str, Any] = {"PartitionKey": partition, "RowKey": INSTANCE_PREFIX + instance_id}
        row.update({"InstanceId": instance_id, **fields})
        write = InstanceWrite(row, create=create)
        for key in _LARGE_FIELDS:
            self._spill(row, key, large.get(key), instance_id, write)
        if history is not None:
            execution_id, number, events = history
            history_row: dict[str, Any] = {
                "PartitionKey": partition,
                "RowKey": f"{HISTORY_PREFIX}{instance_id}|{execution_id}|{number:06d}",
                "InstanceId": instance_id,
                "ExecutionId": execution_id,
                "Row": number,
                "EventCount": len(events),
            }
            self._spill(history_row, "Events", json.dumps(list(events)), instance_id, write)
            write.history_row = history_row
        return write

    async def write(self, write: InstanceWrite) -> None:
        """Commit one instance write (grouped with others of its partition into one transaction)."""
        for name, value in write.blobs.items():
            if name not in self._uploaded:
                await self._large.upload_blob(name, value.encode(), overwrite=True)
                self._uploaded.add(name)
        partition = write.instance_row["PartitionKey"]
        writer = self._writers.get(partition)
        if writer is None:
            writer = _PartitionWriter(self._batches, self._before_commit, self.counters, self.on_committed)
            self._writers[partition] = writer
        await writer.write(write)

    async def _value(self, entity: dict[str, Any], key: str) -> str | None:
        blob_name = entity.get(f"{key}BlobName")
        if blob_name:
            downloader = await self._large.download_blob(blob_name)
            return (await downloader.readall()).decode()
        value = entity.get(key)
        return None if value is None else str(value)

    async def _record(self, entity: dict[str, Any]) -> InstanceRecord:
        row = dict(entity)
        for key in _LARGE_FIELDS:
            row[key] = await self._value(row, key)
        row["State"] = json.loads(row["State"]) if row.get("State") else {}
        return InstanceRecord(row)

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        try:
            entity = await self._table.get_entity(
                self.partition_of(instance_id), INSTANCE_PREFIX + instance_id
            )
        except ResourceNotFoundError:
            return None
        return await self._record(dict(entity))

    async def _events(self, rows: Iterable[dict[str, Any]]) -> list[Event]:
        events: list[Event] = []
        for row in sorted(rows, key=lambda r: r["RowKey"]):
            text = await self._value(row, "Events")
            if text is not None:
                events.extend(json.loads(text))
        return events

    async def load_history(self, instance_id: str, execution_id: str) -> list[Event]:
        prefix = f"{HISTORY_PREFIX}{instance_id}|{execution_id}|"
        rows = [
            dict(row)
            async for row in self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": self.partition_of(instance_id), "lo": prefix, "hi": _after(prefix)},
            )
        ]
        return await self._events(r for r in rows if r["InstanceId"] == instance_id)

    async def load_unfinished(self) -> list[tuple[InstanceRecord, list[Event]]]:
        """Every unfinished instance with its history (one history query per partition)."""
        records = await self.iter_instances(InstanceQuery(runtime_status=UNFINISHED_STATUSES))
        wanted = {(r.instance_id, r.execution_id): r for r in records}
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in wanted}
        for partition in sorted({self.partition_of(r.instance_id) for r in records}):
            async for row in self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": partition, "lo": HISTORY_PREFIX, "hi": _after(HISTORY_PREFIX)},
            ):
                key = (row["InstanceId"], row["ExecutionId"])
                if key in rows:
                    rows[key].append(dict(row))
        return [(record, await self._events(rows[key])) for key, record in wanted.items()]

    async def delete_instance(self, instance_id: str) -> bool:
        """Delete the history rows, then the instance row, then its blobs (a kill in between
        leaves an instance that a second purge removes, never history without an instance)."""
        partition = self.partition_of(instance_id)
        prefix = f"{HISTORY_PREFIX}{instance_id}|"
        keys = [
            row["RowKey"]
            async for row in self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": partition, "lo": prefix, "hi": _after(prefix)},
                select=["RowKey", "InstanceId"],
            )
            if row["InstanceId"] == instance_id
        ]
        for start in range(0, len(keys), MAX_OPERATIONS):
            await self._batches.submit(
                [
                    TableOperation("delete", {"PartitionKey": partition, "RowKey": k})
                    for k in keys[start : start + MAX_OPERATIONS]
                ]
            )
        try:
            await self._table.delete_entity(partition, INSTANCE_PREFIX + instance_id)
        except ResourceNotFoundError:
            return False
        async for blob in self._large.list_blobs(name_starts_with=f"{instance_id}/"):
            with contextlib.suppress(ResourceNotFoundError):
                await self._large.delete_blob(blob.name)
        return True

    async def delete_other_executions(self, instance_id: str, execution_id: str) -> None:
        """Drop history rows of earlier executions (after a restart or continue-as-new)."""
        partition = self.partition_of(instance_id)
        prefix = f"{HISTORY_PREFIX}{instance_id}|"
        stale = [
            row["RowKey"]
            async for row in self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": partition, "lo": prefix, "hi": _after(prefix)},
                select=["RowKey", "InstanceId", "ExecutionId"],
            )
            if row["InstanceId"] == instance_id and row["ExecutionId"] != execution_id
        ]
        for start in range(0, len(stale), MAX_OPERATIONS):
            await self._batches.submit(
                [
                    TableOperation("delete", {"PartitionKey": partition, "RowKey": k})
                    for k in stale[start : start + MAX_OPERATIONS]
                ]
            )

    async def query_instances(
        self, query: InstanceQuery, *, page_size: int, continuation: str | None = None
    ) -> tuple[list[InstanceRecord], str | None]:
        """One page of instances and the token of the next page (None on the last page)."""
        text, params = query.to_filter()
        entities = self._table.query_entities(text, parameters=params, results_per_page=page_size)
        pages = entities.by_page(continuation_token=decode_continuation(continuation))
        records: list[InstanceRecord] = []
        async for page in pages:
            async for entity in page:
                records.append(await self._record(dict(entity)))
            break
        return records, encode_continuation(pages.continuation_token)  # type: ignore[attr-defined]

    async def iter_instances(self, query: InstanceQuery) -> list[InstanceRecord]:
        records: list[InstanceRecord] = []
        token: str | None = None
        while True:
            page, token = await self.query_instances(query, page_size=1000, continuation=token)
            records.extend(page)
            if not token:
                return records

    # -- the virtual clock ----------------------------------------------------------------------

    async def read_clock(self) -> datetime | None:
        try:
            entity = await self._table.get_entity(HUB_PARTITION, "clock")
        except ResourceNotFoundError:
            return None
        value = entity["Now"]
        return value if isinstance(value, datetime) else None

    async def write_clock(self, moment: datetime) -> None:
        await self._table.upsert_entity(
            {"PartitionKey": HUB_PARTITION, "RowKey": "clock", "Now": moment}, mode=UpdateMode.REPLACE
        )


async def _nothing() -> None:
    return None
