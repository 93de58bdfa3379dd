"""Starting orchestrations through the Durable client, at most once per instance id."""

from __future__ import annotations

from typing import Any, Protocol


class DurableClient(Protocol):
    async def get_status(self, instance_id: str) -> Any: ...

    async def start_new(
        self, orchestration_function_name: str, instance_id: str, client_input: Any
    ) -> str: ...


class DurableStarter:
    """Checks for an existing instance first: a redelivered event never restarts a finished one
    (``start_new`` on a completed id would run it again on the Azure Storage backend)."""

    def __init__(self, client: DurableClient) -> None:
        self._client = client

    async def start_if_absent(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> bool:
        status = await self._client.get_status(instance_id)
        if status is not None and getattr(status, "runtime_status", None) is not None:
            return False
        await self._client.start_new(orchestrator, instance_id, payload)
        return True
