"""Lakehouse timers: flush staged rows into Delta, compact tables, purge expired dedup latches."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.runtime import get_runtime

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%FLUSH_SCHEDULE%", run_on_startup=False, use_monitor=False)
def lakehouse_flush(timer: func.TimerRequest) -> None:
    from shared.flush import flush_all

    runtime = get_runtime()
    for result in flush_all(runtime.settings, runtime.storage):
        log.info("flush", extra={"table": result.table, "rows_merged": result.rows_merged})


@bp.timer_trigger(arg_name="timer", schedule="%COMPACT_SCHEDULE%", run_on_startup=False, use_monitor=True)
def lakehouse_compact(timer: func.TimerRequest) -> None:
    from shared.compaction import compact_all

    runtime = get_runtime()
    for result in compact_all(runtime.settings, runtime.storage):
        log.info("compaction", extra={"table": result.table})


@bp.timer_trigger(arg_name="timer", schedule="0 41 * * * *", run_on_startup=False, use_monitor=True)
def dedup_purge(timer: func.TimerRequest) -> None:
    removed = get_runtime().dedup.purge_expired()
    log.info("dedup latches purged", extra={"rows_deleted": removed})
