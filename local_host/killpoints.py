"""Named points where a crash test can have this process SIGKILL itself.

``LOCAL_HOST_KILL_AT=<point>[:<n>]`` kills the process the n-th time (default: the first time)
it passes ``<point>``. The points sit right after a durable write or right before one, where a
real crash would hurt most:

* ``episode-committed``: the instance row recording an episode is written; its activities,
  timers and sub-orchestrations are not started yet.
* ``activity-finished``: an activity function returned; its result is not recorded yet.
* ``instance-started``: a new instance row is written; the start has not been answered.
* ``batch-processed``: an Event Hub batch's function succeeded; the checkpoint is not written.
* ``checkpoint-written``: an Event Hub checkpoint was written.
* ``clock-written``: the virtual clock's new time was written.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_AT_VARIABLE = "LOCAL_HOST_KILL_AT"
POINTS = frozenset(
    {
        "episode-committed",
        "activity-finished",
        "instance-started",
        "batch-processed",
        "checkpoint-written",
        "clock-written",
    }
)
_passed: Counter[str] = Counter()


def _target() -> tuple[str, int] | None:
    value = os.environ.get(KILL_AT_VARIABLE, "").strip()
    if not value:
        return None
    point, _, count = value.partition(":")
    if point not in POINTS:
        raise ValueError(f"{KILL_AT_VARIABLE}={value!r}: unknown point (known: {', '.join(sorted(POINTS))})")
    return point, int(count or 1)


def passed(point: str) -> None:
    """Mark ``point``; SIGKILL this process if it is the configured point and count."""
    target = _target()
    if target is None:
        return
    _passed[point] += 1
    if target == (point, _passed[point]):
        os.kill(os.getpid(), signal.SIGKILL)
