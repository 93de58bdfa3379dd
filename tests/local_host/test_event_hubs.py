"""Event Hub delivery as the Functions host does it: per-event trigger metadata, checkpoints in
blob storage written after a batch succeeded, delivery from the checkpoint on after a restart."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from claimsflow.azurite import Azurite
from local_host import Checkpoint, EventData, LocalHost, VirtualClock
from tests.local_host import local_host_apps as apps
from tests.local_host.local_host_apps import START, MakeHost

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]


def hub_settings(namespace: str) -> dict[str, str]:
    """App settings whose Event Hubs connection names ``namespace`` (checkpoints are kept per
    namespace, hub, consumer group and partition: a namespace per test keeps tests apart)."""
    return {
        "CLAIMS_HUB": "claims",
        "EventHubConnection": f"Endpoint=sb://{namespace}.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=x",
    }


def batch_size_root(tmp_path: Path, size: int) -> Path:
    document = {"version": "2.0", "extensions": {"eventHubs": {"maxEventBatchSize": size}}}
    (tmp_path / "host.json").write_text(json.dumps(document))
    return tmp_path


def source(count: int) -> list[EventData]:
    return [
        EventData(
            f'{{"n": {n}}}',
            partition_key=f"pk-{n % 2}",
            properties={"n": n},
            enqueued_time=START + timedelta(seconds=n),
        )
        for n in range(count)
    ]


MakeTriggerHost = Callable[..., Awaitable[LocalHost]]


@pytest.fixture
def trigger_host(make_host: MakeHost, tmp_path: Path, unique: Callable[[str], str]) -> MakeTriggerHost:
    """Hosts of the trigger app on one task hub (a second one is the first restarted), batch size 2."""
    settings = hub_settings(unique("ns"))
    apps.deliveries.clear()

    async def make(**kwargs: Any) -> LocalHost:
        return await make_host(
            apps.eh_app, settings_env=settings, app_root=batch_size_root(tmp_path, 2), **kwargs
        )

    return make


def delivered() -> list[int]:
    return [e.sequence_number or 0 for batch in apps.deliveries for e in batch]


async def test_each_event_carries_its_own_metadata(trigger_host: MakeTriggerHost) -> None:
    host = await trigger_host()
    outcomes = await host.deliver_partition("ledger", "5", source(3))
    assert [(o.function_name, o.succeeded) for o in outcomes] == [("ledger", True), ("ledger", True)]
    first, second = apps.deliveries
    events = [*first, *second]
    assert [e.sequence_number for e in events] == [0, 1, 2]
    assert [e.offset for e in events] == [0, 8, 16]  # byte offsets: each body is 8 bytes
    assert [e.enqueued_time for e in events] == [START + timedelta(seconds=n) for n in range(3)]
    assert [e.partition_key for e in events] == ["pk-0", "pk-1", "pk-0"]
    assert [e.get_body() for e in events] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    metadata = first[0].metadata
    assert metadata is not None
    assert metadata["PartitionContext"] == {
        "ConsumerGroup": "$Default",
        "EventHubName": "ledger",
        "FullyQualifiedNamespace": metadata["PartitionContext"]["FullyQualifiedNamespace"],
        "PartitionId": "5",
    }
    assert metadata["SequenceNumberArray"] == [0, 1]
    assert metadata["OffsetArray"] == ["0", "8"]
    assert metadata["EnqueuedTimeUtcArray"] == ["2026-11-22T10:00:00.000000Z", "2026-11-22T10:00:01.000000Z"]
    assert metadata["PartitionKeyArray"] == ["pk-0", "pk-1"]
    assert metadata["PropertiesArray"] == [{"n": 0}, {"n": 1}]
    assert [p["x-opt-sequence-number"] for p in metadata["SystemPropertiesArray"]] == [0, 1]


async def test_single_cardinality_gets_one_event_per_invocation(trigger_host: MakeTriggerHost) -> None:
    host = await trigger_host()
    outcomes = await host.deliver_partition("singles", "0", source(3))
    assert [o.succeeded for o in outcomes] == [True, True, True]
    events = [batch[0] for batch in apps.deliveries]
    assert [e.sequence_number for e in events] == [0, 1, 2]
    assert [e.offset for e in events] == ["0", "8", "16"]  # the library decodes a single offset as text
    assert events[2].enqueued_time == START + timedelta(seconds=2)
    assert events[1].partition_key == "pk-1"
    assert (
        events[0].metadata is not None and events[0].metadata["PartitionContext"]["ConsumerGroup"] == "audit"
    )


async def test_checkpoint_blob_is_where_the_functions_host_keeps_it(
    trigger_host: MakeTriggerHost, azurite: Azurite
) -> None:
    host = await trigger_host()
    await host.deliver_partition("ledger", "5", source(5))
    namespace = apps.deliveries[0][0].metadata["PartitionContext"]["FullyQualifiedNamespace"]  # type: ignore[index]
    assert namespace.startswith("ns") and namespace.endswith(".servicebus.windows.net")
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        "azure-webjobs-eventhub"
    )
    blob = container.get_blob_client(f"{namespace}/ledger/$default/checkpoint/5")
    properties = blob.get_blob_properties()
    assert properties.metadata == {"offset": "32", "sequencenumber": "4"}
    assert await host.checkpoint("ledger", "5", "ledger") == Checkpoint(sequence_number=4, offset=32)


async def test_a_restarted_host_delivers_from_the_checkpoint_on(trigger_host: MakeTriggerHost) -> None:
    first = await trigger_host()
    await first.deliver_partition("ledger", "0", source(5))
    assert delivered() == [0, 1, 2, 3, 4]
    await first.stop()

    apps.deliveries.clear()
    second = await trigger_host()
    await second.deliver_partition("ledger", "0", source(8))  # the same partition, three events later
    assert delivered() == [5, 6, 7]
    assert [len(batch) for batch in apps.deliveries] == [2, 1]
    apps.deliveries.clear()
    await second.deliver_partition("ledger", "0", source(8))
    assert delivered() == []


async def test_a_batch_whose_function_gave_up_is_not_checkpointed(
    make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    host = await make_host(apps.eh_app, settings_env=hub_settings(unique("ns")))
    [outcome] = await host.deliver_partition("poison", "0", ["a", "b"])
    assert outcome.gave_up
    assert await host.checkpoint("poison", "0", "always_fails") is None
    [again] = await host.deliver_partition("poison", "0", ["a", "b"])
    assert again.attempts == 3  # the same batch again, retry policy and all


async def test_publishing_after_a_restart_continues_after_the_checkpoint(
    make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    settings = hub_settings(unique("ns"))
    apps.deliveries.clear()
    first = await make_host(apps.eh_app, settings_env=settings)
    await first.deliver_event_hub("ledger", ["a", "b", "c"], partition_id="1")
    await first.stop()
    second = await make_host(apps.eh_app, settings_env=settings, clock=VirtualClock(START))
    await second.deliver_event_hub("ledger", ["d"], partition_id="1")
    assert [[e.sequence_number for e in batch] for batch in apps.deliveries] == [[0, 1, 2], [3]]
    assert apps.deliveries[-1][0].get_body() == b"d"
