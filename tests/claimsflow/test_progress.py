"""The live line of `claimsflow run`: what the app counted, shown only on a terminal."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from rich.console import Console

from claimsflow.progress import RunStatus, live_progress
from local_host import VirtualClock
from shared import metrics
from shared.clock import install_clock, remove_clock

pytestmark = pytest.mark.unit


def test_the_line_reads_the_pipeline_metrics() -> None:
    metrics.reset()
    clock = VirtualClock()
    install_clock(clock)
    try:
        status = RunStatus(clock.now())
        metrics.EVENTS.add(40, domain="xact", outcome="accepted")
        metrics.EVENTS.add(2, domain="xact", outcome="invalid")
        metrics.INSTANCES_STARTED.add(30, domain="xact", orchestrator="o")
        metrics.INSTANCES_ENDED.add(25, domain="xact", orchestrator="o")
        metrics.RETRIES.add(4, domain="xact", category="transient")
        metrics.RETRIES_FIRED.add(1, domain="xact")
        metrics.FLUSH_ROWS.add(1200, table="xact_events")
        clock.advance(timedelta(minutes=75))
        line = status.__rich__().plain
    finally:
        remove_clock(clock)
        metrics.reset()
    assert line == (
        "events delivered 42  orchestrations running 5 ended 25  retries waiting 3  rows flushed 1,200"
        "  virtual clock +1h15m"
    )


def test_nothing_is_shown_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with live_progress(Console(file=stream, force_terminal=False)):
        metrics.EVENTS.add(1, domain="xact", outcome="accepted")
    assert stream.getvalue() == ""


def test_a_terminal_sees_the_line() -> None:
    stream = io.StringIO()
    with live_progress(Console(file=stream, force_terminal=True, width=200)):
        pass
    assert "events delivered" in stream.getvalue()
