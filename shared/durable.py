"""Starting orchestrations through the Durable client, at most once per instance id."""

from __future__ import annotations

from typing import Any, Protocol


class DurableClient(Protocol):
    async def get_status(self, instance_id: str) -> Any: ...

    async def start_new(
        self, orchestration_function_name: str, instance_id: str, client_input: Any
    ) -> str: ...


FINISHED_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})


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
