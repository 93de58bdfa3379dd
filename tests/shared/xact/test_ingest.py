"""Ingest against real Azurite tables: counts, dedup in and across batches, crash and redelivery."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient

from shared.runtime import Runtime
from shared.state.dedup import DedupLatch
from shared.xact.ingest import EVENT_ORCHESTRATOR, XactIngestor
from shared.xact.tables import XACT_EVENTS

pytestmark = pytest.mark.azurite


class InstanceRegistry:
    """A starter that behaves like the Durable client; every instance finishes at once."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.runs: Counter[str] = Counter()
        self.fail_after = fail_after

    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool:
        assert orchestrator == EVENT_ORCHESTRATOR
        if self.fail_after is not None and len(self.instances) >= self.fail_after:
            raise ConnectionResetError("connection reset while starting the orchestration")
        if instance_id in self.instances and not rerun_finished:
            return False
        self.instances[instance_id] = payload
        self.runs[instance_id] += 1
        return True


def event(trace_id: str, **data: Any) -> str:
    payload = {"assignmentId": "A1", "attachments": ["https://h.example.com/a.pdf"], **data}
    return json.dumps(
        {
            "type": "verisk.claims.property.xn.documentsReceived",
            "version": 1,
            "utcDateTime": "2026-02-14T15:04:05Z",
            "traceId": trace_id,
            "data": json.dumps(payload),
        }
    )


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


def ingestor(runtime: Runtime, starter: InstanceRegistry) -> XactIngestor:
    return XactIngestor(
        latch=runtime.dedup,
        staging=runtime.staging,
        dead_letters=runtime.dead_letters,
        starter=starter,
        retry_delays=(300, 600, 1200, 2400),
        now=lambda: datetime(2026, 2, 14, 16, 0, tzinfo=UTC),
        pool=runtime.pool,
    )


async def test_counts_and_duplicates_in_one_batch(runtime: Runtime) -> None:
    starter = InstanceRegistry()
    bodies = [
        event("t1"),
        event("t1"),
        event("t2"),
        "{not json",
        "[1]",
        event("t3", assignmentId=None),
    ]
    report = await ingestor(runtime, starter).ingest(bodies)
    assert (report.received, report.accepted, report.duplicates, report.skipped, report.invalid) == (
        6,
        2,
        1,
        1,
        2,
    )
    assert report.received == report.accepted + report.duplicates + report.skipped + report.invalid
    assert sorted(starter.instances) == sorted(report.started)
    assert len(starter.instances) == 2
    staged = {row.key for row in runtime.staging.read(XACT_EVENTS, limit=100)}
    assert staged == {"t1", "t2", "t3"}  # skipped events are still written to xact_events
    letters = runtime.dead_letters.list()
    assert sorted(letter.payload for letter in letters) == sorted(["{not json", "[1]"])
    assert {letter.reason.value for letter in letters} == {"invalid"}


async def test_duplicates_across_batches_and_processes(
    runtime: Runtime, make_runtime: Callable[..., Runtime]
) -> None:
    starter = InstanceRegistry()
    first = await ingestor(runtime, starter).ingest([event("a"), event("b")])
    assert first.accepted == 2
    second = await ingestor(runtime, starter).ingest([event("a"), event("c")])
    assert (second.accepted, second.duplicates) == (1, 1)
    # a new process with an empty memory cache asks the table
    other = make_runtime(runtime.settings)
    third = await ingestor(other, starter).ingest([event("a"), event("b"), event("c")])
    assert (third.accepted, third.duplicates) == (0, 3)
    assert len(starter.instances) == 3


async def test_storage_failure_releases_latches_and_redelivery_processes(
    runtime: Runtime, make_runtime: Callable[..., Runtime]
) -> None:
    failing = InstanceRegistry(fail_after=1)
    with pytest.raises(ConnectionResetError):
        await ingestor(runtime, failing).ingest([event("x1"), event("x2"), event("x3")])
    assert len(failing.instances) == 1
    # the Event Hub retry policy delivers the batch again, to a healthy client
    healthy = InstanceRegistry()
    healthy.instances.update(failing.instances)
    again = await ingestor(make_runtime(runtime.settings), healthy).ingest(
        [event("x1"), event("x2"), event("x3")]
    )
    assert again.accepted == 3
    assert len(healthy.instances) == 3
    assert len(again.started) == 2  # the instance that did start is not started twice


async def test_crash_mid_batch_then_redelivery(
    runtime: Runtime, make_runtime: Callable[..., Runtime]
) -> None:
    """A hard crash leaves latches pending (nothing released them); the redelivery reclaims them."""
    starter = InstanceRegistry()
    crashed = ingestor(runtime, starter)
    claims = [crashed.latch.claim(t) for t in ("c1", "c2")]  # the crash happens after claiming
    assert all(claims)
    report = await ingestor(make_runtime(runtime.settings), starter).ingest(
        [event("c1"), event("c2"), event("c3")]
    )
    assert report.accepted == 3
    assert len(starter.instances) == 3
    rows = runtime.staging.read(XACT_EVENTS, limit=100)
    assert sorted(row.key for row in rows) == ["c1", "c2", "c3"]


async def test_an_event_seen_longer_ago_than_the_ttl_is_processed_again(runtime: Runtime) -> None:
    now = [datetime(2026, 2, 14, 16, 0, tzinfo=UTC)]
    settings = runtime.settings
    table = TableClient.from_connection_string(
        settings.storage_connection_string or "", settings.state_table("dedup")
    )
    table.create_table()

    def latch() -> DedupLatch:  # a fresh process each time: nothing cached in memory
        return DedupLatch(
            table, ttl=timedelta(hours=24), shards=4, cache_size=10, pool=runtime.pool, now=lambda: now[0]
        )

    starter = InstanceRegistry()

    async def deliver() -> Any:
        ingest = XactIngestor(
            latch(), runtime.staging, runtime.dead_letters, starter, (300,), lambda: now[0], runtime.pool
        )
        return await ingest.ingest([event("ttl-1")])

    assert (await deliver()).accepted == 1
    now[0] += timedelta(hours=23)
    assert (await deliver()).duplicates == 1
    now[0] += timedelta(hours=2)
    again = await deliver()
    assert again.accepted == 1
    assert list(starter.runs.values()) == [2]  # the finished orchestration ran once more
