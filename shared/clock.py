"""What the app reads as "now": the wall clock in Azure, the local host's virtual clock locally.

App code calls :func:`utc_now`. A host that runs its own time (the local host, which moves a
virtual clock to the next durable timer instead of sleeping) installs its clock for as long as it
runs, so presigned-URL expiry, dedup windows and durable timers all see the same time.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


class Clock(Protocol):
    """A source of timezone-aware UTC time."""

    def now(self) -> datetime: ...


@runtime_checkable
class SteppedClock(Protocol):
    """A clock whose time moves only when told to (the local host's virtual clock)."""

    def now(self) -> datetime: ...

    def advance(self, delta: timedelta) -> datetime: ...


class WallClock:
    """The system clock: the only clock in Azure."""

    def now(self) -> datetime:
        return datetime.now(UTC)


WALL_CLOCK = WallClock()
_installed: list[Clock] = []
_lock = threading.Lock()


def install_clock(clock: Clock) -> None:
    """Make ``clock`` the one :func:`utc_now` reads until :func:`remove_clock` (latest install wins)."""
    with _lock:
        _installed.append(clock)


def remove_clock(clock: Clock) -> None:
    """Undo one :func:`install_clock` of ``clock``; the clock installed before it applies again."""
    with _lock:
        for index in range(len(_installed) - 1, -1, -1):
            if _installed[index] is clock:
                del _installed[index]
                return


def current_clock() -> Clock:
    installed = _installed
    return installed[-1] if installed else WALL_CLOCK


def utc_now() -> datetime:
    """The current time as the app should see it (timezone-aware UTC)."""
    return current_clock().now()


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` of the app's time: real time on the wall clock; on a stepped clock the wait
    moves the clock itself (time there passes only on request), so a wait for a lease to run out
    ends at once instead of never."""
    clock = current_clock()
    if isinstance(clock, SteppedClock):
        clock.advance(timedelta(seconds=seconds))
        await asyncio.sleep(0)
    else:
        await asyncio.sleep(seconds)
