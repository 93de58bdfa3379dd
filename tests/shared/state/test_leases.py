from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from claimsflow.azurite import Azurite
from shared.state.leases import TableLease

pytestmark = pytest.mark.azurite


@pytest.fixture
def make_lease(azurite: Azurite, unique: Callable[[str], str]) -> Callable[..., TableLease]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = unique("locks")

    def make(table: str = "xact_events", **kwargs: Any) -> TableLease:
        return TableLease(service, table, container=container, **kwargs)

    return make


def test_acquire_or_skip_and_release(make_lease: Callable[..., TableLease]) -> None:
    first, second, other_table = make_lease(), make_lease(), make_lease("xact_attachments")
    assert first.acquire()  # creates the container and the lock blob on first use
    assert first.held
    assert not second.acquire()  # busy: the caller skips this round
    assert other_table.acquire()  # one lease per table
    first.release()
    assert not first.held
    assert second.acquire()
    second.release()
    other_table.release()
    first.release()  # releasing twice is harmless


def test_hold_releases_on_error(make_lease: Callable[..., TableLease]) -> None:
    lease = make_lease()
    with pytest.raises(RuntimeError, match="boom"), lease.hold() as acquired:
        assert acquired
        with make_lease().hold() as rival:
            assert not rival
        raise RuntimeError("boom")
    with make_lease().hold() as again:
        assert again


def wait_until(condition: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def test_long_holder_renews_and_a_holder_that_stops_renewing_expires(
    make_lease: Callable[..., TableLease],
) -> None:
    """A 15 s lease (the shortest Azure allows) renewed every 2 s outlives its duration; once
    the holder stops renewing without releasing, another worker gets it."""
    holder = make_lease(duration=15, renew_every=2)
    assert holder.acquire()
    time.sleep(17)
    assert not make_lease().acquire()
    assert not holder.lost
    holder._stop.set()  # renewals stop, nothing is released
    rival = make_lease()
    assert wait_until(rival.acquire, limit=30)
    rival.release()
