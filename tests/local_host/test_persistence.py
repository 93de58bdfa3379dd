"""How instances are stored: one row each, long texts split over properties or moved to blobs,
and several instances' writes grouped into one transaction without one conflict failing the rest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from claimsflow.azurite import Azurite
from local_host import LocalHost, VirtualClock
from tests.local_host.local_host_apps import START, MakeHost

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]


def stored_row(azurite: Azurite, host: LocalHost, instance_id: str) -> dict[str, object]:
    table = TableServiceClient.from_connection_string(azurite.connection_string).get_table_client(
        host.store.table_name
    )
    return dict(table.get_entity(host.store.partition_of(instance_id), instance_id))


@pytest.mark.parametrize(("size", "where"), [(100_000, "parts"), (600_000, "blob")])
async def test_long_histories_survive_a_restart(
    azurite: Azurite, make_host: MakeHost, unique: Callable[[str], str], size: int, where: str
) -> None:
    hub = unique("hub")
    first = await make_host(task_hub=hub)
    await first.start_orchestration("big_result", size, instance_id="big")
    await first.run_until_idle()
    row = stored_row(azurite, first, "big")
    if where == "parts":
        assert row["HistoryParts"] == 4  # the result (100,002 characters of JSON) and a few events
        assert all(len(str(row[f"History_{n}"])) <= 30_000 for n in range(1, 4))
    else:
        blob_name = str(row["HistoryBlobName"])
        assert blob_name.startswith("big/history-")
        assert "History" not in row and "OutputBlobName" not in row  # the output still fits inline
    await first.stop()

    second = await make_host(task_hub=hub, clock=VirtualClock(START))
    status = await second.get_status("big")
    assert status is not None and status.runtime_status == "Completed" and status.output == str(size)
    history = await second.get_history("big")
    [result] = [e["Result"] for e in history if "Result" in e and e["EventType"] == 5]
    assert json.loads(result) == "x" * size
    assert await second.management.purge("big") == 1
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        f"{hub.lower()}-largemessages"
    )
    assert [b.name for b in container.list_blobs(name_starts_with="big/")] == []


async def test_a_conflicting_create_fails_alone_in_its_transaction(
    make_host: MakeHost, unique: Callable[[str], str]
) -> None:
    hub = unique("hub")
    first = await make_host(task_hub=hub)
    await first.start_orchestration("chain", instance_id="again")
    await first.run_until_idle()
    old_execution = first.scheduler.instances.get("again")
    assert old_execution is None  # finished and unloaded
    await first.stop()

    second = await make_host(task_hub=hub, clock=VirtualClock(START))
    partition = second.store.partition_of("again")
    neighbours = [i for i in (f"n{n}" for n in range(100)) if second.store.partition_of(i) == partition][:3]
    ids = [*neighbours[:2], "again", neighbours[2]]
    before = (second.store.counters.transactions, second.store.counters.rows)
    # one transaction of four creates: "again" conflicts with the finished row and is taken out, the
    # other three commit; "again" is then written as a new execution of the finished instance
    await asyncio.gather(*(second.start_orchestration("chain", instance_id=i) for i in ids))
    assert (second.store.counters.transactions - before[0], second.store.counters.rows - before[1]) == (2, 4)
    for instance_id in ids:
        status = await second.get_status(instance_id)
        assert status is not None and status.runtime_status == "Pending", instance_id
    await second.run_until_idle()
    history = await second.get_history("again")
    assert [e["EventType"] for e in history].count(0) == 1  # one ExecutionStarted: a fresh execution


async def test_the_partition_count_is_fixed_when_the_hub_is_created(
    make_host: MakeHost, unique: Callable[[str], str], tmp_path: Path
) -> None:
    def root(name: str, count: int) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        document = {"extensions": {"durableTask": {"storageProvider": {"partitionCount": count}}}}
        (folder / "host.json").write_text(json.dumps(document))
        return folder

    hub = unique("hub")
    first = await make_host(task_hub=hub, app_root=root("two", 2))
    await first.start_orchestration("sleeper", 40, instance_id="nap")
    await first.run_until(START)
    await first.stop()
    second = await make_host(task_hub=hub, app_root=root("eight", 8), clock=VirtualClock(START))
    assert second.store.partition_count == 2  # where the instances already are
    await second.run_until_idle()
    status = await second.get_status("nap")
    assert status is not None and status.runtime_status == "Completed"
