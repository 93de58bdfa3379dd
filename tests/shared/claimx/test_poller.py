"""The Eventhouse poller with the real azure-kusto-data client against the simulator's Kusto v2
endpoint, cursors in Azurite: every row handed on exactly once across polls and a restart, even
when many rows share one ingestion time; backfills of a time range."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from claimsflow.simulator import AttachmentSimulator
from shared.claimx.ingest import Message
from shared.claimx.poller import (
    LIVE,
    ClaimXPoller,
    CursorStore,
    KustoEventSource,
    kusto_time,
    parse_kusto_time,
    request_backfill,
)
from shared.clock import install_clock, remove_clock
from shared.config import Settings
from shared.storage import StorageFactory


class HandClock:
    """A clock the test moves by hand."""

    def __init__(self, now: list[datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now[0]


pytestmark = pytest.mark.azurite

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
TABLE = "ClaimXEvents"


def rows(count: int, *, at: datetime, first: int) -> list[dict[str, Any]]:
    return [
        {
            "ingestion_time": at.isoformat(),
            "seq": first + n,
            "eventType": "PROJECT_CREATED",
            "projectId": 5_000_000 + (first + n) % 97,
            "ingestedAt": (at - timedelta(seconds=n % 5)).isoformat().replace("+00:00", "Z"),
        }
        for n in range(count)
    ]


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, messages: Sequence[Message]) -> None:
        self.messages.extend(messages)

    def seqs(self) -> Counter[int]:
        return Counter(json.loads(m.body)["seq"] for m in self.messages)


@pytest.fixture
async def eventhouse() -> AsyncIterator[AttachmentSimulator]:
    sim = AttachmentSimulator({"eventhouse": {TABLE: []}})
    await sim.start()
    yield sim
    await sim.stop()


MakePoller = Callable[..., ClaimXPoller]


@pytest.fixture
def make_poller(
    eventhouse: AttachmentSimulator, make_settings: Callable[..., Settings], unique: Callable[[str], str]
) -> MakePoller:
    """Pollers that share one cursor container: a second one is the first after a restart."""
    settings = make_settings()
    container = StorageFactory(settings).blob_service().get_container_client(unique("pollers"))

    def make(sink: Sink, *, batch_size: int = 1000, max_batches: int = 1) -> ClaimXPoller:
        source = KustoEventSource.open(eventhouse.url, "claimx", TABLE, local=True, credential=None)
        return ClaimXPoller(
            source,
            CursorStore(container),
            sink,
            asyncio.to_thread,
            batch_size=batch_size,
            max_batches=max_batches,
        )

    return make


def test_kusto_time_text_round_trips() -> None:
    at = datetime(2026, 11, 1, 8, 0, 0, 123456, tzinfo=UTC)
    assert kusto_time(at) == "2026-11-01T08:00:00.1234560Z"
    assert parse_kusto_time(kusto_time(at)) == at
    assert parse_kusto_time("2026-11-01T08:00:00Z") == at.replace(microsecond=0)


async def test_2500_rows_across_three_polls_and_a_restart_exactly_once(
    eventhouse: AttachmentSimulator, make_poller: MakePoller
) -> None:
    table = eventhouse.world["eventhouse"][TABLE]
    # 1,300 rows share one ingestion time, so the first batch boundary falls inside them.
    table += rows(1300, at=T0, first=0) + rows(400, at=T0 + timedelta(seconds=1), first=1300)
    sink = Sink()
    first = await make_poller(sink).poll()
    assert (first.batches, first.handed_on) == (1, 1000)

    # The process restarts: a new poller with nothing in memory continues from the stored cursor.
    restarted = make_poller(sink)
    second = await restarted.poll()
    assert second.handed_on == 700
    table += rows(800, at=T0 + timedelta(seconds=2), first=1700)  # new rows arrive between polls
    third = await restarted.poll()
    assert third.handed_on == 800
    assert (await restarted.poll()).handed_on == 0

    seqs = sink.seqs()
    assert len(seqs) == 2500 and set(seqs.values()) == {1}
    times = [m.enqueued_at for m in sink.messages]
    assert times == sorted(times)
    assert sink.messages[0].enqueued_at == T0
    cursor, _ = restarted.cursors.load(LIVE)
    assert cursor is not None and cursor.handed_on == 2500


async def test_rows_inside_the_visibility_lag_wait_for_the_next_poll(
    eventhouse: AttachmentSimulator, make_poller: MakePoller
) -> None:
    now = [T0 + timedelta(seconds=10)]
    clock = HandClock(now)
    install_clock(clock)
    try:
        eventhouse.world["eventhouse"][TABLE] += rows(3, at=T0, first=0)
        sink = Sink()
        poller = make_poller(sink)
        assert (await poller.poll()).handed_on == 0
        now[0] = T0 + timedelta(seconds=31)
        assert (await poller.poll()).handed_on == 3
    finally:
        remove_clock(clock)


async def test_a_batch_that_fails_to_be_handed_on_is_read_again(
    eventhouse: AttachmentSimulator, make_poller: MakePoller
) -> None:
    eventhouse.world["eventhouse"][TABLE] += rows(5, at=T0, first=0)

    async def broken(messages: Sequence[Message]) -> None:
        raise ConnectionResetError("state account unreachable")

    with pytest.raises(ConnectionResetError):
        await make_poller(broken).poll()  # type: ignore[arg-type]
    sink = Sink()
    assert (await make_poller(sink).poll()).handed_on == 5
    assert len(sink.seqs()) == 5


async def test_a_backfill_hands_on_its_range_once(
    eventhouse: AttachmentSimulator, make_poller: MakePoller
) -> None:
    table = eventhouse.world["eventhouse"][TABLE]
    table += rows(30, at=T0, first=0) + rows(30, at=T0 + timedelta(hours=1), first=30)
    table += rows(30, at=T0 + timedelta(hours=2), first=60)
    sink = Sink()
    poller = make_poller(sink, batch_size=25)
    live = await poller.poll()  # the live track reads its first 25
    name = await asyncio.to_thread(
        request_backfill, poller.cursors, T0 + timedelta(hours=1), T0 + timedelta(hours=1), now=T0
    )
    report = await poller.poll()
    assert report.tracks[name] == 25
    report = await poller.poll()
    assert report.tracks[name] == 5
    track, _ = poller.cursors.load(name)
    assert track is not None and track.done and track.handed_on == 30
    assert (await poller.poll()).tracks[name] == 0
    backfilled = [
        json.loads(m.body)["seq"]
        for m in sink.messages[live.handed_on :]
        if 30 <= json.loads(m.body)["seq"] < 60
    ]
    assert sorted(set(backfilled)) == list(range(30, 60))


async def test_other_queries_are_refused_by_the_simulator(eventhouse: AttachmentSimulator) -> None:
    from azure.kusto.data.exceptions import KustoServiceError

    source = KustoEventSource.open(eventhouse.url, "claimx", TABLE, local=True, credential=None)
    with pytest.raises(KustoServiceError):
        await asyncio.to_thread(source.client.execute_query, "claimx", f"{TABLE} | take 1")
