from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient

from claimsflow.azurite import Azurite
from shared.pool import IoPool
from shared.state.dedup import DedupLatch

pytestmark = pytest.mark.azurite


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
    def make(clock: Clock | None = None) -> DedupLatch:
        return DedupLatch(
            table, ttl=timedelta(hours=24), shards=4, cache_size=100, pool=io_pool, now=clock or Clock()
        )

    return make


def test_first_claim_wins_then_duplicate_after_commit(make_latch: Callable[..., DedupLatch]) -> None:
    latch = make_latch()
    claim = latch.claim("trace-1")
    assert claim is not None and not claim.reclaimed
    latch.commit(claim)
    assert latch.claim("trace-1") is None
    # a second process (empty memory cache) sees the table entry
    assert make_latch().claim("trace-1") is None


def test_pending_latch_from_a_crash_is_reclaimed(make_latch: Callable[..., DedupLatch]) -> None:
    crashed = make_latch()
    assert crashed.claim("trace-2") is not None  # never committed: the process died
    survivor = make_latch()
    claim = survivor.claim("trace-2")
    assert claim is not None and claim.reclaimed


def test_released_latch_is_unseen(make_latch: Callable[..., DedupLatch]) -> None:
    latch = make_latch()
    claim = latch.claim("trace-3")
    assert claim is not None
    latch.release(claim)
    again = make_latch().claim("trace-3")
    assert again is not None and not again.reclaimed


def test_entries_older_than_the_ttl_count_as_unseen(make_latch: Callable[..., DedupLatch]) -> None:
    clock = Clock()
    first = make_latch(clock)
    claim = first.claim("trace-4")
    assert claim is not None
    first.commit(claim)
    clock.now += timedelta(hours=23)
    assert make_latch(clock).claim("trace-4") is None
    clock.now += timedelta(hours=2)
    later = make_latch(clock).claim("trace-4")
    assert later is not None and later.reclaimed


def test_a_latch_read_from_the_table_is_remembered_only_until_its_window_ends(
    make_latch: Callable[..., DedupLatch],
) -> None:
    """A process that learns from the table, 23 hours in, that a key is done must forget it when
    the stored window ends (24 hours after the commit), not 24 hours after it read it."""
    clock = Clock()
    first = make_latch(clock)
    claim = first.claim("trace-w")
    assert claim is not None
    first.commit(claim)
    later = make_latch(clock)  # another process: nothing in memory
    clock.now += timedelta(hours=23)
    assert later.claim("trace-w") is None and later.seen_recently("trace-w")
    clock.now += timedelta(hours=2)
    assert not later.seen_recently("trace-w")
    again = later.claim("trace-w")
    assert again is not None and again.expired


def test_keys_with_forbidden_characters(make_latch: Callable[..., DedupLatch]) -> None:
    latch = make_latch()
    key = "a/b#c?d\\e%f"
    claim = latch.claim(key)
    assert claim is not None
    latch.commit(claim)
    assert make_latch().claim(key) is None
    assert make_latch().claim("a/b#c?d\\e%g") is not None


def test_purge_removes_only_expired(make_latch: Callable[..., DedupLatch], table: TableClient) -> None:
    clock = Clock()
    latch = make_latch(clock)
    for key in ("old-1", "old-2"):
        claim = latch.claim(key)
        assert claim is not None
        latch.commit(claim)
    clock.now += timedelta(hours=25)
    fresh = latch.claim("new-1")
    assert fresh is not None
    assert latch.purge_expired() == 2
    assert [e["key"] for e in table.list_entities()] == ["new-1"]
