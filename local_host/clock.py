"""A virtual clock: time moves only when the host is told to move it, so a 40-minute durable timer
takes milliseconds in a test while the history still records the real fire times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class VirtualClock:
    """Monotonic, timezone-aware UTC clock that advances only on request."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the clock cannot go backwards")
        self._now += delta
        return self._now

    def advance_to(self, moment: datetime) -> datetime:
        """Move to ``moment``; a moment in the past leaves the clock where it is."""
        if moment > self._now:
            self._now = moment.astimezone(UTC)
        return self._now

    def __repr__(self) -> str:
        return f"VirtualClock({self._now.isoformat()})"
