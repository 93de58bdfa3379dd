"""Durable state in Azure Storage (Azurite locally), laid out like the Azure Storage provider:
``<hub>Instances`` (one row per instance), ``<hub>History`` (one row per history event, partitioned
by instance id) and ``<hub>-largemessages`` for values over the Table property limit. A new host on
the same storage resumes every unfinished instance from here."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from shared.storage import EMULATOR_CONNECTION_STRING

from .history import Event

# A Table string property holds 64 KiB of UTF-16; keep headroom for the rest of the entity.
_MAX_PROPERTY_BYTES = 60_000
_BATCH_LIMIT = 100
_LARGE_FIELDS = ("Input", "Output", "CustomStatus", "State")
UNFINISHED_STATUSES = ("Pending", "Running", "Suspended")


def _too_large(value: str) -> bool:
    return len(value) * 4 > _MAX_PROPERTY_BYTES and len(value.encode("utf-16-le")) > _MAX_PROPERTY_BYTES


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


@dataclass
class InstanceRecord:
    """The persisted row of one orchestration instance; ``state`` is the engine's bookkeeping."""

    instance_id: str
    name: str
    runtime_status: str
    created_time: datetime
    last_updated_time: datetime
    execution_id: str
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    parent_instance_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceQuery:
    """Filters of the list and bulk-purge routes."""

    runtime_status: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    instance_id_prefix: str | None = None

    def to_filter(self) -> tuple[str | None, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
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
        if self.instance_id_prefix:
            prefix = self.instance_id_prefix
            params["pfrom"] = prefix
            params["pto"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            clauses.append("PartitionKey ge @pfrom and PartitionKey lt @pto")
        return (" and ".join(clauses) or None), params


class DurableStore:
    """Async access to the task hub's tables and large-message container."""

    def __init__(self, connection_string: str, task_hub: str) -> None:
        if connection_string.strip().lower().rstrip(";") == "usedevelopmentstorage=true":
            connection_string = EMULATOR_CONNECTION_STRING
        self.task_hub = task_hub
        self._tables = TableServiceClient.from_connection_string(connection_string)
        self._blobs = BlobServiceClient.from_connection_string(connection_string)
        self._instances: TableClient = self._tables.get_table_client(f"{task_hub}Instances")
        self._history: TableClient = self._tables.get_table_client(f"{task_hub}History")
        self._large: ContainerClient = self._blobs.get_container_client(f"{task_hub.lower()}-largemessages")

    async def open(self) -> None:
        for table in (self._instances, self._history):
            with contextlib.suppress(ResourceExistsError):
                await table.create_table()
        with contextlib.suppress(ResourceExistsError):
            await self._large.create_container()

    async def close(self) -> None:
        await self._instances.close()
        await self._history.close()
        await self._tables.close()
        await self._blobs.close()

    # -- large values ---------------------------------------------------------------------------

    async def _put_value(self, entity: dict[str, Any], key: str, value: str | None, blob_name: str) -> None:
        if value is None:
            return
        if _too_large(value):
            await self._large.upload_blob(blob_name, value.encode(), overwrite=True)
            entity[f"{key}BlobName"] = blob_name
        else:
            entity[key] = value

    async def _get_value(self, entity: dict[str, Any], key: str) -> str | None:
        blob_name = entity.get(f"{key}BlobName")
        if blob_name:
            downloader = await self._large.download_blob(blob_name)
            return (await downloader.readall()).decode()
        return entity.get(key)

    # -- history --------------------------------------------------------------------------------

    async def append_history(
        self, instance_id: str, execution_id: str, first_index: int, events: Sequence[Event]
    ) -> None:
        """Write events ``first_index..`` of an instance's history as one row (one episode per write).

        One plain upsert per episode instead of one row per event: an entity-group transaction costs
        the Tables SDK ~10 ms of multipart encoding per call, which dominated the host's throughput.
        """
        entity: dict[str, Any] = {
            "PartitionKey": instance_id,
            "RowKey": f"{first_index:010d}",
            "ExecutionId": execution_id,
            "EventCount": len(events),
        }
        blob_name = f"{instance_id}/history-{execution_id}-{first_index}"
        await self._put_value(entity, "Events", json.dumps(list(events)), blob_name)
        await self._history.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def load_history(self, instance_id: str) -> list[Event]:
        rows = [
            row
            async for row in self._history.query_entities(
                "PartitionKey eq @pk", parameters={"pk": instance_id}
            )
        ]
        rows.sort(key=lambda row: row["RowKey"])
        events: list[Event] = []
        for row in rows:
            text = await self._get_value(row, "Events")
            if text is not None:
                events.extend(json.loads(text))
        return events

    async def delete_history(self, instance_id: str) -> None:
        keys = [
            row["RowKey"]
            async for row in self._history.query_entities(
                "PartitionKey eq @pk", parameters={"pk": instance_id}, select=["RowKey"]
            )
        ]
        for start in range(0, len(keys), _BATCH_LIMIT):
            chunk = keys[start : start + _BATCH_LIMIT]
            await self._history.submit_transaction(
                [("delete", {"PartitionKey": instance_id, "RowKey": key}) for key in chunk]
            )
        async for blob in self._large.list_blobs(name_starts_with=f"{instance_id}/"):
            with contextlib.suppress(ResourceNotFoundError):
                await self._large.delete_blob(blob.name)

    # -- instances ------------------------------------------------------------------------------

    async def write_instance(self, record: InstanceRecord) -> None:
        entity: dict[str, Any] = {
            "PartitionKey": record.instance_id,
            "RowKey": "",
            "Name": record.name,
            "RuntimeStatus": record.runtime_status,
            "CreatedTime": record.created_time,
            "LastUpdatedTime": record.last_updated_time,
            "ExecutionId": record.execution_id,
        }
        if record.parent_instance_id:
            entity["ParentInstanceId"] = record.parent_instance_id
        values = (record.input, record.output, record.custom_status, json.dumps(record.state))
        for key, value in zip(_LARGE_FIELDS, values, strict=True):
            await self._put_value(
                entity, key, value, f"{record.instance_id}/{key.lower()}-{record.execution_id}"
            )
        await self._instances.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def _to_record(self, entity: dict[str, Any]) -> InstanceRecord:
        state_text = await self._get_value(entity, "State")
        return InstanceRecord(
            instance_id=entity["PartitionKey"],
            name=entity["Name"],
            runtime_status=entity["RuntimeStatus"],
            created_time=entity["CreatedTime"],
            last_updated_time=entity["LastUpdatedTime"],
            execution_id=entity["ExecutionId"],
            input=await self._get_value(entity, "Input"),
            output=await self._get_value(entity, "Output"),
            custom_status=await self._get_value(entity, "CustomStatus"),
            parent_instance_id=entity.get("ParentInstanceId"),
            state=json.loads(state_text) if state_text else {},
        )

    async def read_instance(self, instance_id: str) -> InstanceRecord | None:
        try:
            entity = await self._instances.get_entity(instance_id, "")
        except ResourceNotFoundError:
            return None
        return await self._to_record(dict(entity))

    async def delete_instance(self, instance_id: str) -> bool:
        try:
            await self._instances.delete_entity(instance_id, "")
        except ResourceNotFoundError:
            return False
        await self.delete_history(instance_id)
        return True

    async def query_instances(
        self, query: InstanceQuery, *, page_size: int, continuation: str | None = None
    ) -> tuple[list[InstanceRecord], str | None]:
        """One page of instances and the token of the next page (None on the last page)."""
        text, params = query.to_filter()
        kwargs: dict[str, Any] = {"results_per_page": page_size}
        entities = (
            self._instances.query_entities(text, parameters=params, **kwargs)
            if text
            else self._instances.list_entities(**kwargs)
        )
        pages = entities.by_page(continuation_token=decode_continuation(continuation))
        records: list[InstanceRecord] = []
        async for page in pages:
            async for entity in page:
                records.append(await self._to_record(dict(entity)))
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

    async def unfinished(self) -> Iterable[InstanceRecord]:
        return await self.iter_instances(InstanceQuery(runtime_status=UNFINISHED_STATUSES))
