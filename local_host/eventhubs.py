"""Event Hub partitions, trigger input and checkpoints, as the Functions host handles them.

A partition is the list of events the service retains, numbered by sequence number (0, 1, ...)
with byte offsets. The host delivers a consumer group's events from its checkpoint on, in batches
of ``maxEventBatchSize``, and writes the checkpoint after a batch's function succeeded: a blob
``<namespace>/<hub>/<consumer group>/checkpoint/<partition>`` (lower case) in the
``azure-webjobs-eventhub`` container with ``offset`` and ``sequencenumber`` metadata, as the Event
Hubs checkpoint store names it. A restarted host on the same storage resumes after the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from .history import timestamp

CHECKPOINT_CONTAINER = "azure-webjobs-eventhub"
DEFAULT_NAMESPACE = "localhost"


@dataclass(frozen=True)
class EventData:
    """One event as a producer sends it; ``enqueued_time`` defaults to the host's now when the
    event reaches the partition."""

    body: bytes | str
    partition_key: str | None = None
    properties: Mapping[str, Any] | None = None
    enqueued_time: datetime | None = None


@dataclass(frozen=True)
class PartitionEvent:
    """An event in a partition, numbered as the service numbers it."""

    sequence_number: int
    offset: int
    enqueued_time: datetime
    body: bytes
    partition_key: str | None
    properties: Mapping[str, Any]


@dataclass
class Partition:
    """The retained events of one partition, from ``first_sequence`` on."""

    first_sequence: int = 0
    first_offset: int = 0
    events: list[PartitionEvent] = field(default_factory=list)

    def append(self, data: EventData | bytes | str, now: datetime) -> PartitionEvent:
        if not isinstance(data, EventData):
            data = EventData(data)
        body = data.body.encode("utf-8") if isinstance(data.body, str) else bytes(data.body)
        if self.events:
            last = self.events[-1]
            sequence, offset = last.sequence_number + 1, last.offset + len(last.body)
        else:
            sequence, offset = self.first_sequence, self.first_offset
        item = PartitionEvent(
            sequence, offset, data.enqueued_time or now, body, data.partition_key, dict(data.properties or {})
        )
        self.events.append(item)
        return item

    def after(self, sequence_number: int | None) -> list[PartitionEvent]:
        """The events after ``sequence_number`` (all of them for None)."""
        if sequence_number is None:
            return list(self.events)
        return [e for e in self.events if e.sequence_number > sequence_number]


@dataclass(frozen=True)
class Checkpoint:
    sequence_number: int
    offset: int


def checkpoint_blob_name(namespace: str, hub: str, consumer_group: str, partition_id: str) -> str:
    return f"{namespace}/{hub}/{consumer_group}/checkpoint/{partition_id}".lower()


def namespace_of(settings: Mapping[str, str], connection: str | None) -> str:
    """The Event Hubs namespace a trigger's ``connection`` setting points at."""
    if not connection:
        return DEFAULT_NAMESPACE
    qualified = settings.get(f"{connection}__fullyQualifiedNamespace")
    if qualified:
        return qualified
    for part in settings.get(connection, "").split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "endpoint":
            return value.strip().removeprefix("sb://").strip("/") or DEFAULT_NAMESPACE
    return DEFAULT_NAMESPACE


class CheckpointStore:
    """Checkpoint blobs in the host storage account."""

    def __init__(self, connection_string: str) -> None:
        self._blobs = BlobServiceClient.from_connection_string(connection_string)
        self._container: ContainerClient = self._blobs.get_container_client(CHECKPOINT_CONTAINER)
        self._created = False

    async def close(self) -> None:
        await self._blobs.close()

    async def read(self, name: str) -> Checkpoint | None:
        try:
            properties = await self._container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        metadata = properties.metadata or {}
        if "sequencenumber" not in metadata:
            return None
        return Checkpoint(int(metadata["sequencenumber"]), int(metadata.get("offset") or 0))

    async def write(self, name: str, checkpoint: Checkpoint) -> None:
        """One request: the metadata of an existing blob, or a new empty blob carrying it."""
        metadata = {"offset": str(checkpoint.offset), "sequencenumber": str(checkpoint.sequence_number)}
        blob = self._container.get_blob_client(name)
        try:
            await blob.set_blob_metadata(metadata)
        except ResourceNotFoundError:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    await self._container.create_container()
                self._created = True
            await blob.upload_blob(b"", overwrite=True, metadata=metadata)


def _system_properties(e: PartitionEvent) -> dict[str, Any]:
    enqueued = timestamp(e.enqueued_time)
    return {
        "x-opt-sequence-number": e.sequence_number,
        "x-opt-offset": str(e.offset),
        "x-opt-enqueued-time": enqueued,
        "x-opt-partition-key": e.partition_key,
        "SequenceNumber": e.sequence_number,
        "Offset": str(e.offset),
        "PartitionKey": e.partition_key,
        "EnqueuedTimeUtc": enqueued,
    }


def trigger_input(
    events: Sequence[PartitionEvent],
    *,
    cardinality_many: bool,
    namespace: str,
    hub_name: str,
    consumer_group: str,
    partition_id: str,
    function_name: str,
    now: datetime,
) -> list[func.EventHubEvent]:
    """What the worker hands the function, built by the library's ``EventHubTriggerConverter``
    from the trigger metadata the Event Hubs extension sends: for ``cardinality=many`` the arrays
    (``SequenceNumberArray``, ``OffsetArray``, ``EnqueuedTimeUtcArray``, ``PartitionKeyArray``,
    ``PropertiesArray``, ``SystemPropertiesArray``), one entry per event; for a single event
    the same keys without ``Array``. ``PartitionContext`` names the partition."""
    context = {
        "ConsumerGroup": consumer_group,
        "EventHubName": hub_name,
        "FullyQualifiedNamespace": namespace,
        "PartitionId": partition_id,
    }
    metadata: dict[str, meta.Datum] = {
        "PartitionContext": meta.Datum(json.dumps(context), "json"),
        "sys": meta.Datum(
            json.dumps(
                {"MethodName": function_name, "UtcNow": timestamp(now), "RandGuid": str(uuid.uuid4())}
            ),
            "json",
        ),
    }
    if cardinality_many:
        metadata |= {
            "PartitionKeyArray": meta.Datum(json.dumps([e.partition_key for e in events]), "json"),
            "OffsetArray": meta.Datum(json.dumps([str(e.offset) for e in events]), "json"),
            "SequenceNumberArray": meta.Datum(json.dumps([e.sequence_number for e in events]), "json"),
            "EnqueuedTimeUtcArray": meta.Datum(
                json.dumps([timestamp(e.enqueued_time) for e in events]), "json"
            ),
            "PropertiesArray": meta.Datum(json.dumps([dict(e.properties) for e in events]), "json"),
            "SystemPropertiesArray": meta.Datum(json.dumps([_system_properties(e) for e in events]), "json"),
        }
        data = meta.Datum(SimpleNamespace(bytes=[e.body for e in events]), "collection_bytes")
        decoded = EventHubTriggerConverter.decode(data, trigger_metadata=metadata)
        assert isinstance(decoded, list)
        return decoded
    result = []
    for e in events:
        single = metadata | {
            "PartitionKey": meta.Datum(e.partition_key, "string")
            if e.partition_key
            else meta.Datum(None, None),
            "Offset": meta.Datum(str(e.offset), "string"),
            "SequenceNumber": meta.Datum(e.sequence_number, "int"),
            "EnqueuedTimeUtc": meta.Datum(timestamp(e.enqueued_time), "string"),
            "Properties": meta.Datum(json.dumps(dict(e.properties)), "json"),
            "SystemProperties": meta.Datum(json.dumps(_system_properties(e)), "json"),
        }
        item = EventHubTriggerConverter.decode(meta.Datum(e.body, "bytes"), trigger_metadata=single)
        assert isinstance(item, func.EventHubEvent)
        result.append(item)
    return result
