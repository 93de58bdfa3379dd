"""Lakehouse timers: flush staged rows into Delta, compact tables, purge expired dedup latches."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.runtime import get_runtime

log = logging.getLogger(__name__)
bp = func.Blueprint()


class LakehouseTimerError(RuntimeError):
    """Some tables failed; the others were done. Raised so the run shows as failed."""


@bp.timer_trigger(arg_name="timer", schedule="%FLUSH_SCHEDULE%", run_on_startup=False, use_monitor=False)
def lakehouse_flush(timer: func.TimerRequest) -> None:
    from shared.flush import FlushStatus, flush_all

    runtime = get_runtime()
    results = flush_all(runtime.settings, runtime.storage)
    for result in results:
        log.info("flush %s: %s", result.table, result.status.value, extra=result.to_dict())
    failed = [f"{r.table}: {r.error}" for r in results if r.status is FlushStatus.FAILED]
    if failed:
        raise LakehouseTimerError("flush failed for " + "; ".join(failed))


@bp.timer_trigger(arg_name="timer", schedule="%COMPACT_SCHEDULE%", run_on_startup=False, use_monitor=True)
def lakehouse_compact(timer: func.TimerRequest) -> None:
    from shared.compaction import CompactionStatus, compact_all

    runtime = get_runtime()
    results = compact_all(runtime.settings, runtime.storage)
    for result in results:
        log.info("compaction %s: %s", result.table, result.status.value, extra=result.to_dict())
    failed = [f"{r.table}: {r.error}" for r in results if r.status is CompactionStatus.FAILED]
    if failed:
        raise LakehouseTimerError("compaction failed for " + "; ".join(failed))


@bp.timer_trigger(arg_name="timer", schedule="0 41 * * * *", run_on_startup=False, use_monitor=True)
def dedup_purge(timer: func.TimerRequest) -> None:
    removed = get_runtime().dedup.purge_expired()
    log.info("dedup latches purged: %d", removed)
