from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from azure.data.tables import TableClient

from claimsflow.azurite import Azurite
from shared.pool import IoPool
from shared.state.dedup import LEASE, Busy, Claim, DedupLatch

pytestmark = pytest.mark.azurite

DAY = date(2026, 11, 23)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def table(azurite: Azurite, unique: Callable[[str], str]) -> TableClient:
    client = TableClient.from_connection_string(azurite.connection_string, unique("dedup"))
    client.create_table()
    return client


@pytest.fixture
def make_latch(table: TableClient, io_pool: IoPool) -> Callable[..., DedupLatch]:
    """A latch per call: each is another process (its own memory cache) on the same table."""

    def make(clock: Clock | None = None) -> DedupLatch:
        return DedupLatch(
            table, ttl=timedelta(hours=24), shards=4, cache_size=100, pool=io_pool, now=clock or Clock()
        )

    return make


def claimed(result: object) -> Claim:
    assert isinstance(result, Claim), result
    return result


def test_first_claim_wins_then_duplicate_after_commit(make_latch: Callable[..., DedupLatch]) -> None:
    latch = make_latch()
    claim = claimed(latch.claim("trace-1", DAY))
    assert not claim.reclaimed and claim.first_date == DAY
    latch.commit(claim)
    assert latch.claim("trace-1", DAY) is None
    # a second process (empty memory cache) sees the table entry
    assert make_latch().claim("trace-1", DAY) is None


def test_a_pending_latch_is_taken_over_only_after_its_lease(make_latch: Callable[..., DedupLatch]) -> None:
    """A holder killed after claiming (or still working) keeps the key until its lease runs out:
    meanwhile another delivery is told to wait, never that the key is a duplicate."""
    clock = Clock()
    started = clock.now
    claimed(make_latch(clock).claim("trace-2", DAY))  # then the holder is killed
    redelivery = make_latch(clock)
    clock.now += LEASE - timedelta(seconds=1)
    assert redelivery.claim("trace-2", DAY) == Busy("trace-2", started + LEASE)
    assert redelivery.take_over("trace-2", DAY) == Busy("trace-2", started + LEASE)  # still its holder's
    clock.now += timedelta(seconds=1)
    # after the lease a plain claim still answers Busy: only a caller that found no proof of the
    # holder's work (no orchestration) takes the key over
    assert redelivery.claim("trace-2", DAY) == Busy("trace-2", started + LEASE)
    taken = claimed(redelivery.take_over("trace-2", DAY))
    assert taken.reclaimed and not taken.expired and taken.attempts == 2


def test_released_latch_is_taken_at_once(make_latch: Callable[..., DedupLatch]) -> None:
    latch = make_latch()
    claim = claimed(latch.claim("trace-3", DAY))
    latch.release(claim)
    again = claimed(make_latch().claim("trace-3", DAY))
    assert again.reclaimed and not again.expired


def test_entries_older_than_the_ttl_count_as_unseen(make_latch: Callable[..., DedupLatch]) -> None:
    clock = Clock()
    first = make_latch(clock)
    first.commit(claimed(first.claim("trace-4", DAY)))
    clock.now += timedelta(hours=23)
    assert make_latch(clock).claim("trace-4", DAY) is None
    clock.now += timedelta(hours=2)
    later = claimed(make_latch(clock).claim("trace-4", DAY))
    assert later.reclaimed and later.expired


def test_the_first_date_is_kept_for_every_later_delivery(make_latch: Callable[..., DedupLatch]) -> None:
    """A redelivery after the TTL that carries another date gets the first one: its row goes to
    the partition the key already lives in."""
    clock = Clock()
    latch = make_latch(clock)
    latch.commit(claimed(latch.claim("trace-5", DAY)))
    clock.now += timedelta(days=3)
    later = claimed(make_latch(clock).claim("trace-5", date(2026, 11, 26)))
    assert later.expired and later.first_date == DAY
    # a release (the rerun failed) keeps it too
    make_latch(clock).release(later)
    assert claimed(make_latch(clock).claim("trace-5", date(2027, 1, 1))).first_date == DAY


def test_a_latch_read_from_the_table_is_remembered_only_until_its_window_ends(
    make_latch: Callable[..., DedupLatch],
) -> None:
    """A process that learns from the table, 23 hours in, that a key is done must forget it when
    the stored window ends (24 hours after the commit), not 24 hours after it read it."""
    clock = Clock()
    first = make_latch(clock)
    first.commit(claimed(first.claim("trace-w", DAY)))
    later = make_latch(clock)  # another process: nothing in memory
    clock.now += timedelta(hours=23)
    assert later.claim("trace-w", DAY) is None and later.seen_recently("trace-w")
    clock.now += timedelta(hours=2)
    assert not later.seen_recently("trace-w")
    assert claimed(later.claim("trace-w", DAY)).expired


def test_keys_with_forbidden_characters(make_latch: Callable[..., DedupLatch]) -> None:
    latch = make_latch()
    key = "a/b#c?d\\e%f"
    latch.commit(claimed(latch.claim(key, DAY)))
    assert make_latch().claim(key, DAY) is None
    assert make_latch().claim("a/b#c?d\\e%g", DAY) is not None


def test_done_marks_ride_with_the_next_claims(
    make_latch: Callable[..., DedupLatch], table: TableClient
) -> None:
    """commit_many writes nothing at once; the next claim_many of the same partitions carries the
    marks in its own transactions, and close() writes what is left."""
    latch = make_latch()
    keys = [f"k{i}" for i in range(40)]
    claims = [claimed(r) for r in latch.claim_many(keys, [DAY] * len(keys))]
    latch.commit_many(claims)
    assert {e["state"] for e in table.list_entities()} == {"pending"}
    assert latch.claim_many(keys, [DAY] * len(keys)) == [None] * len(keys)  # this process knows
    more = [f"m{i}" for i in range(40)]
    latch.claim_many(more, [DAY] * len(more))
    states = {e["key"]: e["state"] for e in table.list_entities()}
    assert all(states[k] == "done" for k in keys)
    assert make_latch().claim_many(keys, [DAY] * len(keys)) == [None] * len(keys)
    latch.close()  # nothing queued: no error


def test_claim_many_falls_back_per_key_and_keeps_queued_marks(
    make_latch: Callable[..., DedupLatch], table: TableClient
) -> None:
    latch = make_latch()
    first = [claimed(r) for r in latch.claim_many(["a", "b", "c"], [DAY] * 3)]
    latch.commit_many(first)
    other = make_latch()  # another process meets the existing latches: 409, then per key
    results = other.claim_many(["a", "b", "c", "d"], [DAY] * 4)
    assert [type(r).__name__ for r in results] == ["Busy", "Busy", "Busy", "Claim"]
    latch.close()
    assert make_latch().claim_many(["a", "b", "c"], [DAY] * 3) == [None, None, None]


def test_purge_removes_only_abandoned_latches(
    make_latch: Callable[..., DedupLatch], table: TableClient
) -> None:
    """Latches fix their keys' partitions, so they stay; only one a failed delivery gave back and
    nobody took again within the TTL goes."""
    clock = Clock()
    latch = make_latch(clock)
    for key in ("done-1", "done-2"):
        latch.commit(claimed(latch.claim(key, DAY)))
    claimed(latch.claim("started-1", DAY))  # its work's proof is its orchestration: no mark
    latch.release(claimed(latch.claim("given-back", DAY)))
    clock.now += timedelta(hours=25)
    claimed(latch.claim("new-1", DAY))
    assert latch.purge_expired() == 1
    assert sorted(e["key"] for e in table.list_entities()) == ["done-1", "done-2", "new-1", "started-1"]
