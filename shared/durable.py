"""What the app does through the Durable client: start an orchestration at most once per instance
id, and purge finished histories after their retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from shared.errors import ClassifiedError, ErrorCategory, Failure

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


class OrchestrationStarter(Protocol):
    """Starts an orchestration unless an instance with that id exists; a finished one is run
    again only when ``rerun_finished`` (the event is new again after the dedup TTL). Idempotent:
    a start by the same event (a concurrent one included) is success. :class:`DurableStarter` is
    the real one; ingest and replay of every domain take this."""

    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool: ...

    async def exists(self, instance_id: str) -> bool:
        """Whether an instance with this id exists, in any state."""
        ...


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
    """Starts an orchestration once per instance id, idempotently.

    It checks for an existing instance first: a redelivered event never restarts an instance
    (``start_new`` on a finished id would run it again on the Azure Storage backend), unless the
    caller says the event is new again (its dedup entry had expired). When ``start_new`` fails
    (a concurrent start by another delivery of the same event gets 409; a lost answer may hide a
    start that happened), it looks again: an instance that now exists, and is not the finished
    one a rerun wanted to replace, was started by the same event, so the start is a success."""

    def __init__(self, client: DurableClient) -> None:
        self._client = client

    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool:
        """``True`` when this call started the instance, ``False`` when it was there already."""
        state = await self._state(instance_id)
        if state is not None and not (rerun_finished and state in FINISHED_STATUSES):
            return False
        try:
            await self._client.start_new(orchestrator, instance_id, payload)
        except Exception as exc:
            after = await self._state(instance_id)
            if after is not None and not (rerun_finished and after in FINISHED_STATUSES):
                return False
            # The management API fails a start only for reasons outside the event (the extension
            # unwell, the orchestrator missing from this deployment): retry, never blame the body.
            raise ClassifiedError(
                Failure.of(
                    ErrorCategory.TRANSIENT, f"starting {instance_id} failed: {type(exc).__name__}: {exc}"
                )
            ) from exc
        return True

    async def exists(self, instance_id: str) -> bool:
        """Whether an instance with this id exists, in any state."""
        return await self._state(instance_id) is not None

    async def _state(self, instance_id: str) -> str | None:
        status = await self._client.get_status(instance_id)
        runtime_status = getattr(status, "runtime_status", None)
        return None if runtime_status is None else str(getattr(runtime_status, "value", runtime_status))


async def purge_finished_instances(client: DurableClient, *, now: datetime, retention: timedelta) -> int:
    """Purge completed and terminated instances created in ``[now - retention - window, now -
    retention)``. Dead-lettered work lives on in the dead-letter table, so its history is not the
    only record; failed instances are kept."""
    until = now - retention
    result = await client.purge_instance_history_by(
        created_time_from=until - PURGE_WINDOW, created_time_to=until, runtime_status=list(PURGED_BY_TIMER)
    )
    return int(result.instances_deleted)
