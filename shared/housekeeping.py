"""Housekeeping: finished orchestration histories are purged after a retention period.

Bulk purges of large task hubs time out (durable-extension #1145, #2211), so each run purges one
bounded window of creation times; an hourly timer walks forward with the clock. Dead-lettered work
lives on in the dead-letter table, so purging its orchestration history loses nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

FINISHED = [
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
]
PURGE_WINDOW = timedelta(days=2)  # runs hourly: a window this wide survives a day of downtime


class PurgingClient(Protocol):
    async def purge_instance_history_by(
        self,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        runtime_status: list[Any] | None = None,
    ) -> Any: ...


async def purge_finished_instances(client: PurgingClient, *, now: datetime, retention: timedelta) -> int:
    """Purge finished instances created in ``[now - retention - window, now - retention)``."""
    until = now - retention
    result = await client.purge_instance_history_by(
        created_time_from=until - PURGE_WINDOW, created_time_to=until, runtime_status=FINISHED
    )
    return int(result.instances_deleted)
