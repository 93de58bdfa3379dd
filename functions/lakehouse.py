"""Lakehouse timers: flush staged rows into Delta, compact the tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum

import azure.functions as func

from shared.lake.compaction import CompactionResult, CompactionStatus
from shared.lake.flush import FlushResult, FlushStatus
from shared.runtime import get_runtime

log = logging.getLogger(__name__)
bp = func.Blueprint()


class LakehouseTimerError(RuntimeError):
    """Some tables failed; the others were done. Raised so the run shows as failed."""


def _report(kind: str, results: Sequence[FlushResult | CompactionResult], failed_status: StrEnum) -> None:
    """Log each table's outcome; raise if any table failed (the others were still done)."""
    for result in results:
        log.info("%s %s: %s", kind, result.table, result.status.value, extra=result.to_dict())
    failed = [f"{r.table}: {r.error}" for r in results if r.status is failed_status]
    if failed:
        raise LakehouseTimerError(f"{kind} failed for " + "; ".join(failed))


@bp.timer_trigger(arg_name="timer", schedule="%FLUSH_SCHEDULE%", run_on_startup=False, use_monitor=False)
def lakehouse_flush(timer: func.TimerRequest) -> None:
    _report("flush", get_runtime().lakehouse.flush_all(), FlushStatus.FAILED)


@bp.timer_trigger(arg_name="timer", schedule="%COMPACT_SCHEDULE%", run_on_startup=False, use_monitor=True)
def lakehouse_compact(timer: func.TimerRequest) -> None:
    _report("compaction", get_runtime().lakehouse.compact_all(), CompactionStatus.FAILED)
