"""Live progress of ``claimsflow run`` on a terminal: events delivered, orchestrations running and
ended, retries waiting on the virtual clock, rows flushed. Read from the pipeline's own metrics, so
it shows what the app counted, not what the driver hopes. Nothing is shown when stderr is not a
terminal (a script, a pipe, CI)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from rich.console import Console
from rich.live import Live
from rich.text import Text

from shared import metrics
from shared.clock import utc_now


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


class RunStatus:
    """The one line of progress, rendered fresh on every refresh."""

    def __init__(self, started: datetime) -> None:
        self.started = started

    def __rich__(self) -> Text:
        delivered = int(metrics.EVENTS.total())
        started = int(metrics.INSTANCES_STARTED.total())
        ended = int(metrics.INSTANCES_ENDED.total())
        failed = int(metrics.INSTANCES_FAILED.total())
        waiting = int(metrics.RETRIES.total() - metrics.RETRIES_FIRED.total())
        flushed = int(metrics.FLUSH_ROWS.total())
        clock = _duration((utc_now() - self.started).total_seconds())
        return Text.assemble(
            ("events delivered ", "dim"),
            (f"{delivered:,}", "bold"),
            ("  orchestrations running ", "dim"),
            (f"{max(started - ended, 0):,}", "bold"),
            (" ended ", "dim"),
            (f"{ended:,}", "bold"),
            (f" ({failed:,} failed)" if failed else "", "red"),
            ("  retries waiting ", "dim"),
            (f"{max(waiting, 0):,}", "bold"),
            ("  rows flushed ", "dim"),
            (f"{flushed:,}", "bold"),
            ("  virtual clock +", "dim"),
            (clock, "bold"),
        )


@contextmanager
def live_progress(console: Console | None = None) -> Iterator[None]:
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with Live(RunStatus(utc_now()), console=console, refresh_per_second=4, transient=True):
        yield
