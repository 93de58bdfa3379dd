"""What the app does through the Durable client: start an orchestration at most once per instance
id, and purge finished histories after their retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

FINISHED = (
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
)  # the extension never produces the legacy ``Canceled`` status
FINISHED_STATUSES = frozenset(status.value for status in FINISHED)
# A failed instance is never purged by the timer: it may hold the only record of an outcome that
# could not be recorded elsewhere (docs/architecture.md, section 5), or show a bug. On-call purges
# it once resolved.
PURGED_BY_TIMER = (OrchestrationRuntimeStatus.Completed, OrchestrationRuntimeStatus.Terminated)
# Bulk purges of large task hubs time out (durable-extension issues #1145 and #2211), so each run
# purges one bounded window of creation times; the hourly timer walks it forward with the clock.
PURGE_WINDOW = timedelta(days=2)  # a window this wide survives a day of downtime


class DurableClient(Protocol):
    async def get_status(self, instance_id: str) -> Any: ...

    async def start_new(
        self, orchestration_function_name: str, instance_id: str, client_input: Any
    ) -> str: ...

    async def purge_instance_history_by(
        self,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        runtime_status: list[Any] | None = None,
    ) -> Any: ...


class DurableStarter:
    """Checks for an existing instance first. A redelivered event never restarts an instance
    (``start_new`` on a finished id would run it again on the Azure Storage backend), unless the
    caller says the event is new again (its dedup entry had expired)."""

    def __init__(self, client: DurableClient) -> None:
        self._client = client

    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool:
        status = await self._client.get_status(instance_id)
        runtime_status = getattr(status, "runtime_status", None)
        if runtime_status is not None:
            state = getattr(runtime_status, "value", runtime_status)
            if not (rerun_finished and state in FINISHED_STATUSES):
                return False
        await self._client.start_new(orchestrator, instance_id, payload)
        return True


async def purge_finished_instances(client: DurableClient, *, now: datetime, retention: timedelta) -> int:
    """Purge completed and terminated instances created in ``[now - retention - window, now -
    retention)``. Dead-lettered work lives on in the dead-letter table, so its history is not the
    only record; failed instances are kept."""
    until = now - retention
    result = await client.purge_instance_history_by(
        created_time_from=until - PURGE_WINDOW, created_time_to=until, runtime_status=list(PURGED_BY_TIMER)
    )
    return int(result.instances_deleted)
