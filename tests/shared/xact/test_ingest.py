"""Ingest against real Azurite tables: counts, dedup in and across batches, hostile bodies, poison
isolation, killed holders and redelivery."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.runtime import Runtime
from shared.state.deadletter import DeadLetterReason
from shared.state.dedup import DedupLatch
from shared.state.failures import POISON_AFTER, body_digest
from shared.xact.events import MAX_BODY_BYTES
from shared.xact.ingest import EVENT_ORCHESTRATOR, XactIngestor
from shared.xact.tables import XACT_EVENTS
from tests import hostile

pytestmark = pytest.mark.azurite

START = datetime(2026, 2, 14, 16, 0, tzinfo=UTC)


class InstanceRegistry:
    """A starter that behaves like the Durable client; every instance finishes at once.
    ``fail_after`` fails every start after that many (a connection reset: storage trouble);
    ``refuse`` makes the starts of those trace ids fail for good (a 400 from the extension)."""

    def __init__(self, fail_after: int | None = None, refuse: frozenset[str] = frozenset()) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.runs: Counter[str] = Counter()
        self.fail_after = fail_after
        self.refuse = refuse

    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool:
        assert orchestrator == EVENT_ORCHESTRATOR
        if payload["trace_id"] in self.refuse:
            raise ValueError(f"the extension rejected the input of {instance_id}")
        if self.fail_after is not None and len(self.instances) >= self.fail_after:
            raise ConnectionResetError("connection reset while starting the orchestration")
        if instance_id in self.instances and not rerun_finished:
            return False
        self.instances[instance_id] = payload
        self.runs[instance_id] += 1
        return True

    async def exists(self, instance_id: str) -> bool:
        return instance_id in self.instances


@dataclass
class Clock:
    """One clock for the latch and the ingest; sleeping moves it (no test waits in real time)."""

    now: datetime = START
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def event(trace_id: str, when: str = "2026-02-14T15:04:05Z", **data: Any) -> str:
    payload = {"assignmentId": "A1", "attachments": ["https://h.example.com/a.pdf"], **data}
    return json.dumps(
        {
            "type": "verisk.claims.property.xn.documentsReceived",
            "version": 1,
            "utcDateTime": when,
            "traceId": trace_id,
            "data": json.dumps(payload),
        }
    )


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()


def ingestor(runtime: Runtime, starter: InstanceRegistry, clock: Clock | None = None) -> XactIngestor:
    """An ingest in the process ``runtime`` stands for; with ``clock``, a latch of its own on the
    same table (another process) that reads that clock."""
    latch = runtime.dedup
    if clock is not None:
        latch = DedupLatch(
            runtime.dedup._table,
            ttl=timedelta(hours=24),
            shards=runtime.dedup._shards,
            cache_size=10,
            pool=runtime.pool,
            now=clock,
        )
    return XactIngestor(
        latch=latch,
        staging=runtime.staging,
        dead_letters=runtime.dead_letters,
        failures=runtime.ingest_failures,
        starter=starter,
        retry_delays=(300, 600, 1200, 2400),
        now=clock or (lambda: START),
        pool=runtime.pool,
        sleep=clock.sleep if clock is not None else Clock().sleep,
    )


def counts(report: Any) -> tuple[int, ...]:
    assert report.received == report.accepted + report.duplicates + report.skipped + report.invalid
    return (report.received, report.accepted, report.duplicates, report.skipped, report.invalid)


async def test_counts_and_duplicates_in_one_batch(runtime: Runtime) -> None:
    starter = InstanceRegistry()
    bodies = [event("t1"), event("t1"), event("t2"), "{not json", "[1]", event("t3", assignmentId=None)]
    report = await ingestor(runtime, starter).ingest(bodies)
    assert counts(report) == (6, 2, 1, 1, 2)
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
    second = await ingestor(runtime, starter).ingest([event("a"), event("c"), event("b3", assignmentId=None)])
    assert (second.accepted, second.duplicates, second.skipped) == (1, 1, 1)
    runtime.dedup.close()  # the first process ends: its queued done marks are written
    # a new process with an empty memory cache asks the table
    other = make_runtime(runtime.settings)
    third = await ingestor(other, starter).ingest([event("a"), event("b"), event("c"), event("b3")])
    assert counts(third) == (4, 0, 4, 0, 0)
    assert len(starter.instances) == 3


async def test_storage_failure_releases_latches_and_redelivery_processes(
    runtime: Runtime, make_runtime: Callable[..., Runtime]
) -> None:
    failing = InstanceRegistry(fail_after=1)
    with pytest.raises(ConnectionResetError):
        await ingestor(runtime, failing).ingest([event("x1"), event("x2"), event("x3")])
    assert len(failing.instances) == 1
    # an outage is not counted against the bodies: the retry stays unlimited
    assert runtime.ingest_failures.record([body_digest(event("x1"))], "probe") == [1]
    # the Event Hub retry policy delivers the batch again, to a healthy client
    healthy = InstanceRegistry()
    healthy.instances.update(failing.instances)
    again = await ingestor(make_runtime(runtime.settings), healthy).ingest(
        [event("x1"), event("x2"), event("x3")]
    )
    assert again.accepted == 3
    assert len(healthy.instances) == 3
    assert len(again.started) == 2  # the instance that did start is not started twice


async def test_a_killed_holder_is_waited_for_until_its_lease_ends(runtime: Runtime) -> None:
    """A holder killed after claiming leaves latches pending: the redelivery neither counts them
    as duplicates (the event would be lost) nor takes them at once (the holder may be alive):
    it waits, bounded, for the lease to end, then processes the events."""
    clock = Clock()
    starter = InstanceRegistry()
    killed = ingestor(runtime, starter, clock)
    killed.latch.claim_many(["c1", "c2"], [START.date()] * 2)  # then SIGKILL: nothing released
    report = await ingestor(runtime, starter, clock).ingest([event("c1"), event("c2"), event("c3")])
    assert counts(report) == (3, 3, 0, 0, 0)
    assert len(starter.instances) == 3
    assert 55 <= sum(clock.slept) <= 61  # the lease, in polls
    rows = runtime.staging.read(XACT_EVENTS, limit=100)
    assert sorted(row.key for row in rows) == ["c1", "c2", "c3"]


async def test_a_live_holder_finishing_makes_the_waiter_count_a_duplicate(runtime: Runtime) -> None:
    clock = Clock()
    starter = InstanceRegistry()
    holder = ingestor(runtime, starter, clock)
    (claim,) = holder.latch.claim_many(["live-1"], [START.date()])
    assert claim is not None and not isinstance(claim, type(None))
    waiter = ingestor(runtime, starter, clock)

    async def sleep_then_holder_commits(seconds: float) -> None:
        await clock.sleep(seconds)
        holder.latch.commit(claim)  # type: ignore[arg-type]

    waiter.sleep = sleep_then_holder_commits
    report = await waiter.ingest([event("live-1")])
    assert counts(report) == (1, 0, 1, 0, 0)
    assert clock.slept == [1.0]


async def test_a_redelivery_after_the_ttl_with_another_date_keeps_the_first_partition(
    runtime: Runtime,
) -> None:
    clock = Clock()
    starter = InstanceRegistry()

    async def deliver(body: str) -> Any:
        ingest = ingestor(runtime, starter, clock)  # a fresh process each time
        report = await ingest.ingest([body])
        ingest.latch.close()
        return report

    assert (await deliver(event("ttl-1"))).accepted == 1
    clock.now += timedelta(hours=23)
    assert (await deliver(event("ttl-1", when="2026-02-15T09:00:00Z"))).duplicates == 1
    clock.now += timedelta(hours=2)
    again = await deliver(event("ttl-1", when="2026-02-16T09:00:00Z"))
    assert again.accepted == 1
    assert list(starter.runs.values()) == [2]  # the finished orchestration ran once more
    (payload,) = starter.instances.values()
    assert payload["event_date"] == "2026-02-14"  # the attachments follow the first partition
    rows = runtime.staging.read(XACT_EVENTS, limit=100)
    assert [(row.key, row.values["event_date"].isoformat()) for row in rows] == [("ttl-1", "2026-02-14")]


HOSTILE = {
    "year 9999 with a -23:00 offset": event("h-date", when="9999-12-31T23:00:00-23:00"),
    "100,000 nested brackets in data": json.dumps(
        {"type": "x.y", "utcDateTime": "2026-02-14T15:04:05Z", "traceId": "h-deep", "data": "[" * 100_000}
    ),
    "a 40,000-character author": event("h-author", author="a" * 40_000),
    "a body over the limit": event("h-big", note="n" * MAX_BODY_BYTES),
    "not UTF-8": b'{"traceId": "h-latin1", "note": "caf\xe9"}',
}


async def test_hostile_bodies_are_invalid_and_the_rest_of_the_batch_goes_on(runtime: Runtime) -> None:
    starter = InstanceRegistry()
    good = [event(f"good-{i}") for i in range(20)]
    bom = b"\xef\xbb\xbf" + event("h-bom").encode()
    bodies: list[bytes | str] = [*good[:10], *HOSTILE.values(), bom, *good[10:]]
    report = await ingestor(runtime, starter).ingest(bodies)
    assert counts(report) == (26, 21, 0, 0, 5)
    staged = {row.key for row in runtime.staging.read(XACT_EVENTS, limit=100)}
    assert staged == {f"good-{i}" for i in range(20)} | {"h-bom"}
    letters = {
        letter.payload if isinstance(letter.payload, str) else "": letter
        for letter in runtime.dead_letters.list()
    }
    assert len(letters) == 5
    reasons = sorted(letter.error for letter in letters.values())
    assert any("out of range" in r for r in reasons)
    assert any("nested deeper" in r for r in reasons)
    assert any("author holds 40000 UTF-16 units" in r for r in reasons)
    assert any(f"exceeds {MAX_BODY_BYTES}" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)
    # the large body's dead letter keeps it whole (in a blob)
    assert HOSTILE["a body over the limit"] in letters


async def test_a_poison_body_is_isolated_after_repeated_failures(runtime: Runtime) -> None:
    """A body that fails its batch for a reason nobody foresaw (here the orchestration start
    rejects it for good) blocks nothing for long: after POISON_AFTER failures the batch is split,
    the body is dead-lettered as poison and the others are processed."""
    starter = InstanceRegistry(refuse=frozenset({"p-7"}))
    bodies = [event(f"p-{i}") for i in range(12)]
    for _ in range(POISON_AFTER - 1):
        with pytest.raises(ValueError, match="rejected"):
            await ingestor(runtime, starter).ingest(bodies)
    # after a restart the host may deliver the same bodies in another batch shape: counts are per body
    report = await ingestor(runtime, starter).ingest(list(reversed(bodies)))
    assert counts(report) == (12, 11, 0, 0, 1)
    assert report.poison == 1
    assert len(starter.instances) == 11
    (letter,) = runtime.dead_letters.list()
    assert letter.reason is DeadLetterReason.POISON
    assert letter.payload == event("p-7")
    assert "rejected the input" in letter.error
    # the batch delivered again (its checkpoint was lost): the poison body is isolated at its
    # first failure, its dead letter is not doubled, the rest are duplicates
    runtime.dedup.close()
    again = await ingestor(runtime, starter).ingest(bodies)
    assert counts(again) == (12, 0, 11, 0, 1) and again.poison == 1
    assert len(runtime.dead_letters.list()) == 1


async def test_a_failure_of_every_body_is_no_poison(runtime: Runtime) -> None:
    starter = InstanceRegistry(refuse=frozenset(f"s-{i}" for i in range(4)))
    bodies = [event(f"s-{i}") for i in range(4)]
    for _ in range(POISON_AFTER + 1):
        with pytest.raises(ValueError, match="rejected"):
            await ingestor(runtime, starter).ingest(bodies)
    assert runtime.dead_letters.list() == []  # nothing is declared poison; the batch keeps retrying


async def test_a_duplicate_whose_holder_already_started_it_is_settled_without_waiting(
    runtime: Runtime, make_runtime: Callable[..., Runtime]
) -> None:
    """The holder's done mark may still be queued (it rides with its next claims); a delivery in
    another process that meets the pending latch asks whether the orchestration exists, and counts
    a duplicate at once instead of waiting out the lease."""
    starter = InstanceRegistry()
    assert (await ingestor(runtime, starter).ingest([event("q-1")])).accepted == 1
    clock = Clock(now=datetime.now(UTC))
    other = ingestor(make_runtime(runtime.settings), starter, clock)
    report = await other.ingest([event("q-1")])
    assert counts(report) == (1, 0, 1, 0, 0)
    assert clock.slept == []


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(hostile.bodies, min_size=1, max_size=8), st.integers(min_value=1, max_value=6), st.randoms())
async def test_every_body_ends_in_exactly_one_count_and_the_good_ones_go_through(
    runtime: Runtime, noise: list[bytes | str], good: int, rng: Any
) -> None:
    example = uuid.uuid4().hex[:8]
    goods = [event(f"{example}-{n}") for n in range(good)]
    batch: list[bytes | str] = [*goods, *noise]
    rng.shuffle(batch)
    starter = InstanceRegistry()
    report = await ingestor(runtime, starter).ingest(batch)
    assert report.received == len(batch)
    assert report.received == report.accepted + report.duplicates + report.skipped + report.invalid
    staged = {row.key for row in runtime.staging.read(XACT_EVENTS, limit=10_000)}
    assert {f"{example}-{n}" for n in range(good)} <= staged
    for n in range(good):
        assert any(payload["trace_id"] == f"{example}-{n}" for payload in starter.instances.values())


async def test_the_row_of_the_largest_valid_body_is_staged(runtime: Runtime) -> None:
    """A body at the size limit, made of the text that costs most once stored (two-byte UTF-8
    characters, six bytes each in the request's JSON), is taken whole into ``description`` and
    ``raw_json``, and Azurite, which refuses an entity's request over 1 MiB, stages the row."""

    def body_of(size: int) -> bytes:
        data = {"assignmentId": "A1", "description": "é" * size}
        document = {
            "type": "verisk.claims.property.xn.documentsReceived",
            "utcDateTime": "2026-02-14T15:04:05Z",
            "traceId": "largest",
            "data": json.dumps(data, ensure_ascii=False),
        }
        return json.dumps(document, ensure_ascii=False).encode()

    size = (MAX_BODY_BYTES - len(body_of(0))) // 2
    body = body_of(size)
    assert MAX_BODY_BYTES - 2 <= len(body) <= MAX_BODY_BYTES
    report = await ingestor(runtime, InstanceRegistry()).ingest([body])
    assert counts(report) == (1, 1, 0, 0, 0)
    [row] = runtime.staging.read(XACT_EVENTS, limit=10)
    assert row.values["description"] == "é" * size
    too_big = body_of(size + 1)
    assert (await ingestor(runtime, InstanceRegistry()).ingest([too_big])).invalid == 1
