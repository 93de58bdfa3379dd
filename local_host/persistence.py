"""Durable state in Azure Storage (Azurite locally), written so that a process killed at any
instant leaves storage consistent.

Layout: one table, ``<hub>Orchestrations``, partitioned like the Azure Storage provider's control
queues (``partitionCount`` of host.json; an instance's partition is the FNV-1a hash of its id).
Each instance is ONE row (row key: the instance id) holding its status, input, output, custom
status, the host's replay state with the messages not yet consumed, and its whole history.
Partition ``hub`` keeps the task hub's partition count (fixed when the hub is created, as the Azure
Storage provider fixes it) and the virtual clock.

Every change of an instance, an episode included, is therefore one entity write: its history and
the state that consumed its messages are written together or not at all, and an event is never
recorded twice. Long texts are split over several properties (``History``, ``History_1``, ...;
``HistoryParts`` says how many); what does not fit the 1 MiB entity goes to a blob in
``<hub>-largemessages`` named after its content and uploaded before the row that names it.

Writes that wait at the same time are grouped per partition into entity-group transactions (at
most 100 rows, 3 MiB): the service and Azurite pay per request far more than per row. Azurite looks
rows up by scanning their partition, so one row per instance (not one per event) keeps that cheap.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import Callable
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

# A Table string property holds 64 KiB of UTF-16 (the texts written here are ASCII JSON: one unit
# per character); an entity holds 1 MiB.
_PROPERTY_CHARS = 30_000
_ENTITY_TEXT_CHARS = 420_000
_MAX_TRANSACTION_BYTES = 3 * 1024 * 1024  # under the 4 MiB limit, with room for the envelope
TEXT_FIELDS = ("Input", "Output", "CustomStatus", "State", "History")
_COMMIT_ATTEMPTS = 4
# Transactions of one partition in flight at once: writes that arrive while one is in flight go in
# the next, so a write waits for at most one transaction before its own.
_TRANSACTIONS_IN_FLIGHT = 2
UNFINISHED_STATUSES = ("Pending", "Running", "Suspended")
HUB_PARTITION = "hub"


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
    """The stored row of one instance: texts resolved, ``State`` parsed (``History`` on demand)."""

    row: dict[str, Any]

    @property
    def instance_id(self) -> str:
        return str(self.row["RowKey"])

    @property
    def runtime_status(self) -> str:
        return str(self.row["RuntimeStatus"])

    @property
    def execution_id(self) -> str:
        return str(self.row["ExecutionId"])

    @property
    def history(self) -> list[Event]:
        text = self.row.get("History")
        return list(json.loads(text)) if text else []


@dataclass(frozen=True)
class InstanceQuery:
    """Filters of the list and bulk-purge routes."""

    runtime_status: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    instance_id_prefix: str | None = None

    def to_filter(self) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"hub": HUB_PARTITION}
        clauses = ["PartitionKey ne @hub"]
        if self.instance_id_prefix:
            params["rfrom"], params["rto"] = self.instance_id_prefix, _after(self.instance_id_prefix)
            clauses.append("RowKey ge @rfrom and RowKey lt @rto")
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
    """One atomic write of an instance: its whole row."""

    row: dict[str, Any]
    create: bool = False  # the instance must not exist yet
    blobs: dict[str, str] = field(default_factory=dict)  # texts to upload first

    @cached_property
    def operation(self) -> TableOperation:
        return TableOperation("insert" if self.create else "upsert", self.row)

    @property
    def instance_id(self) -> str:
        return str(self.row["RowKey"])


@dataclass
class _Pending:
    write: InstanceWrite
    done: asyncio.Future[None]


@dataclass
class WriteCounters:
    """Storage writes the host made (the benchmark reports them per episode)."""

    transactions: int = 0
    rows: int = 0
    blobs: int = 0


class _PartitionWriter:
    """Groups the instance writes waiting for one partition into transactions (group commit)."""

    def __init__(
        self,
        batches: TableBatchClient,
        before_commit: Callable[[], Any],
        counters: WriteCounters,
    ) -> None:
        self._batches = batches
        self._before_commit = before_commit
        self._counters = counters
        self._queue: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def write(self, write: InstanceWrite) -> None:
        pending = _Pending(write, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if len(self._flushers) < _TRANSACTIONS_IN_FLIGHT:
            flusher = asyncio.create_task(self._flush())
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        await pending.done

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        keys: set[str] = set()
        size = 0
        while self._queue and len(taken) < MAX_OPERATIONS:
            write = self._queue[0].write
            item_size = len(write.operation.body)
            if taken and (size + item_size > _MAX_TRANSACTION_BYTES or write.instance_id in keys):
                break
            taken.append(self._queue.pop(0))
            keys.add(write.instance_id)
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
            try:
                await self._submit([item.write.operation for item in batch])
            except TableBatchError as exc:
                if exc.index is None or exc.status >= 500 or exc.index >= len(batch):
                    raise
                culprit = batch.pop(exc.index)
                conflict = exc.code == "EntityAlreadyExists"
                culprit.done.set_exception(InstanceConflict(culprit.write.instance_id) if conflict else exc)
                continue
            self._counters.transactions += 1
            self._counters.rows += len(batch)
            for item in batch:
                item.done.set_result(None)
            return

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

    @property
    def connection_string(self) -> str:
        return self._connection_string

    async def open(self, before_commit: Callable[[], Any] | None = None) -> None:
        """Create the table and container, and read (or fix) the hub's partition count;
        ``before_commit`` runs before every transaction."""
        if before_commit is not None:
            self._before_commit = before_commit
        with contextlib.suppress(ResourceExistsError):
            await self._table.create_table()
        with contextlib.suppress(ResourceExistsError):
            await self._large.create_container()
        try:
            hub = await self._table.get_entity(HUB_PARTITION, "taskhub")
            self.partition_count = int(hub["PartitionCount"])
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await self._table.create_entity(
                    {
                        "PartitionKey": HUB_PARTITION,
                        "RowKey": "taskhub",
                        "PartitionCount": self.partition_count,
                    }
                )
            hub = await self._table.get_entity(HUB_PARTITION, "taskhub")
            self.partition_count = int(hub["PartitionCount"])

    async def close(self) -> None:
        await self._batches.close()
        await self._table.close()
        await self._tables.close()
        await self._blobs.close()

    def partition_of(self, instance_id: str) -> str:
        """The instance's control partition: FNV-1a of its id modulo the hub's partition count."""
        return f"{fnv1a(instance_id) % self.partition_count:02d}"

    # -- rows -----------------------------------------------------------------------------------

    def instance_write(
        self, *, instance_id: str, fields: dict[str, Any], texts: dict[str, str | None], create: bool = False
    ) -> InstanceWrite:
        """The row of one instance: ``fields`` as they are, ``texts`` inline (split over several
        properties when long) while the entity has room, the rest in blobs named after their
        content (``TEXT_FIELDS`` order: the history, written last, is the one that spills)."""
        row: dict[str, Any] = {
            "PartitionKey": self.partition_of(instance_id),
            "RowKey": instance_id,
            **fields,
        }
        write = InstanceWrite(row, create=create)
        room = _ENTITY_TEXT_CHARS
        for key in TEXT_FIELDS:
            value = texts.get(key)
            if value is None:
                continue
            if len(value) <= room:
                room -= len(value)
                parts = [value[i : i + _PROPERTY_CHARS] for i in range(0, len(value), _PROPERTY_CHARS)] or [
                    ""
                ]
                row[key] = parts[0]
                for number, part in enumerate(parts[1:], start=1):
                    row[f"{key}_{number}"] = part
                if len(parts) > 1:
                    row[f"{key}Parts"] = len(parts)
            else:
                blob_name = f"{instance_id}/{key.lower()}-{hashlib.sha256(value.encode()).hexdigest()[:32]}"
                write.blobs[blob_name] = value
                row[f"{key}BlobName"] = blob_name
        return write

    async def write(self, write: InstanceWrite) -> None:
        """Commit one instance row (grouped with others of its partition into one transaction)."""
        for name, value in write.blobs.items():
            if name not in self._uploaded:
                await self._large.upload_blob(name, value.encode(), overwrite=True)
                self._uploaded.add(name)
                self.counters.blobs += 1
        partition = write.row["PartitionKey"]
        writer = self._writers.get(partition)
        if writer is None:
            writer = _PartitionWriter(self._batches, self._before_commit, self.counters)
            self._writers[partition] = writer
        await writer.write(write)

    async def _text(self, entity: dict[str, Any], key: str) -> str | None:
        blob_name = entity.get(f"{key}BlobName")
        if blob_name:
            downloader = await self._large.download_blob(blob_name)
            return (await downloader.readall()).decode()
        if key not in entity:
            return None
        parts = int(entity.get(f"{key}Parts") or 1)
        return "".join([str(entity[key]), *(str(entity[f"{key}_{n}"]) for n in range(1, parts))])

    async def _record(self, entity: dict[str, Any]) -> InstanceRecord:
        row = dict(entity)
        for key in TEXT_FIELDS:
            row[key] = await self._text(row, key)
        row["State"] = json.loads(row["State"]) if row.get("State") else {}
        return InstanceRecord(row)

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        try:
            entity = await self._table.get_entity(self.partition_of(instance_id), instance_id)
        except ResourceNotFoundError:
            return None
        return await self._record(dict(entity))

    async def load_unfinished(self) -> list[InstanceRecord]:
        return await self.iter_instances(InstanceQuery(runtime_status=UNFINISHED_STATUSES))

    async def delete_instance(self, instance_id: str) -> bool:
        """Delete the row, then the blobs it named (a blob left by a kill is never read)."""
        try:
            await self._table.delete_entity(self.partition_of(instance_id), instance_id)
        except ResourceNotFoundError:
            return False
        async for blob in self._large.list_blobs(name_starts_with=f"{instance_id}/"):
            with contextlib.suppress(ResourceNotFoundError):
                await self._large.delete_blob(blob.name)
        return True

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
