"""Housekeeping timers: expired dedup latches and old orchestration histories."""

from __future__ import annotations

import logging
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

from shared.clock import utc_now
from shared.durable import purge_finished_instances
from shared.runtime import get_runtime

log = logging.getLogger(__name__)
bp = df.Blueprint()
INGEST_FAILURE_RETENTION = timedelta(days=7)  # a body failing less often than this is no poison


@bp.timer_trigger(arg_name="timer", schedule="0 41 * * * *", run_on_startup=False, use_monitor=True)
def dedup_purge(timer: func.TimerRequest) -> None:
    runtime = get_runtime()
    removed = runtime.dedup.purge_expired()
    forgotten = runtime.ingest_failures.purge_older_than(INGEST_FAILURE_RETENTION)
    log.info("abandoned dedup latches purged: %d; old ingest failure counts: %d", removed, forgotten)


@bp.timer_trigger(arg_name="timer", schedule="0 23 * * * *", run_on_startup=False, use_monitor=True)
@bp.durable_client_input(client_name="client")
async def instance_purge(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    retention = timedelta(days=get_runtime().settings.instance_retention_days)
    purged = await purge_finished_instances(client, now=utc_now(), retention=retention)
    log.info("finished orchestration histories purged: %d", purged)
