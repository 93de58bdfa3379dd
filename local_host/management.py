"""The Durable management operations (start, status, list, raise event, terminate, suspend, resume,
restart, purge) over the scheduler and the store: what the HTTP management API serves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .history import Event, EventType, event, played_view
from .orchestration import TERMINAL_STATUSES, Instance
from .persistence import InstanceQuery
from .scheduler import InstanceGone, InstanceNotFound, InstanceNotTerminal, Scheduler


@dataclass
class InstanceStatus:
    """What the status routes report about one instance."""

    instance_id: str
    name: str
    runtime_status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: datetime
    last_updated_time: datetime
    history: list[Event] | None = None

    @classmethod
    def of(cls, inst: Instance, history: list[Event] | None) -> InstanceStatus:
        return cls(
            inst.instance_id,
            inst.name,
            inst.status,
            inst.input,
            inst.output,
            inst.custom_status,
            inst.created,
            inst.last_updated,
            played_view(history) if history is not None else None,
        )

    @classmethod
    def of_row(cls, row: dict[str, Any], history: list[Event] | None) -> InstanceStatus:
        return cls(
            row["RowKey"],
            row["Name"],
            row["RuntimeStatus"],
            row.get("Input"),
            row.get("Output"),
            row.get("CustomStatus"),
            row["CreatedTime"],
            row["LastUpdatedTime"],
            played_view(history) if history is not None else None,
        )


class Management:
    """Client-facing operations on the instances of one task hub."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.clock = scheduler.clock

    async def start(self, name: str, instance_id: str | None, input_json: str | None) -> str:
        return await self.scheduler.start_instance(name, instance_id, input_json)

    async def status(self, instance_id: str, *, with_history: bool = False) -> InstanceStatus | None:
        inst = self.scheduler.instances.get(instance_id)
        if inst is not None:
            return InstanceStatus.of(inst, list(inst.history) if with_history else None)
        record = await self.store.read_instance(instance_id)
        if record is None:
            return None
        return InstanceStatus.of_row(record.row, record.history if with_history else None)

    async def query(
        self, query: InstanceQuery, *, page_size: int, continuation: str | None
    ) -> tuple[list[InstanceStatus], str | None]:
        records, token = await self.store.query_instances(
            query, page_size=page_size, continuation=continuation
        )
        statuses = []
        for record in records:
            live = self.scheduler.instances.get(record.instance_id)
            statuses.append(
                InstanceStatus.of(live, None) if live is not None else InstanceStatus.of_row(record.row, None)
            )
        return statuses, token

    async def _live(self, instance_id: str) -> Instance:
        inst = await self.scheduler.load(instance_id)
        if inst is None:
            raise InstanceNotFound(instance_id)
        if inst.is_terminal:
            raise InstanceGone(instance_id)
        return inst

    async def _append(self, inst: Instance, events: list[Event]) -> None:
        """Record a management episode (OrchestratorStarted ... OrchestratorCompleted)."""
        inst.append_history(events)
        await self.scheduler.write(inst)

    async def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        inst = await self._live(instance_id)
        async with self.scheduler.lock(instance_id):
            if inst.is_terminal:
                raise InstanceGone(instance_id)
            inst.enqueue(event(EventType.EventRaised, self.clock.now(), Name=name, Input=data_json))
            await self.scheduler.write(inst)
        self.scheduler.settled(inst)

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        inst = await self._live(instance_id)
        async with self.scheduler.lock(instance_id):
            if inst.is_terminal:
                raise InstanceGone(instance_id)
            now = self.clock.now()
            result = json.dumps(reason)
            inst.inbox.clear()
            inst.status = "Terminated"
            inst.output = result
            inst.replay.pending_timers.clear()
            inst.replay.retries.clear()
            inst.last_updated = now
            await self._append(
                inst,
                [
                    event(EventType.OrchestratorStarted, now),
                    event(EventType.ExecutionTerminated, now, Input=result),
                    event(EventType.ExecutionCompleted, now, OrchestrationStatus="Terminated", Result=result),
                    event(EventType.OrchestratorCompleted, now),
                ],
            )
        self.scheduler.settled(inst)

    async def set_suspended(self, instance_id: str, suspended: bool, reason: str | None) -> None:
        inst = await self._live(instance_id)
        async with self.scheduler.lock(instance_id):
            if inst.is_terminal:
                raise InstanceGone(instance_id)
            if (inst.status == "Suspended") == suspended:
                return
            now = self.clock.now()
            kind = EventType.ExecutionSuspended if suspended else EventType.ExecutionResumed
            inst.status = "Suspended" if suspended else "Running"
            inst.last_updated = now
            await self._append(
                inst,
                [
                    event(EventType.OrchestratorStarted, now),
                    event(kind, now, Reason=reason),
                    event(EventType.OrchestratorCompleted, now),
                ],
            )
        self.scheduler.settled(inst)

    async def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        status = await self.status(instance_id)
        if status is None:
            raise InstanceNotFound(instance_id)
        return await self.start(status.name, None if new_instance_id else instance_id, status.input)

    async def purge(self, instance_id: str) -> int:
        status = await self.status(instance_id)
        if status is None:
            raise InstanceNotFound(instance_id)
        if status.runtime_status not in TERMINAL_STATUSES:
            raise InstanceNotTerminal(
                "Only orchestrations in a terminal state can be purged, but the orchestration with "
                f"instance ID {instance_id} has status {status.runtime_status}"
            )
        self.scheduler.instances.pop(instance_id, None)
        return int(await self.store.delete_instance(instance_id))

    async def purge_by(self, query: InstanceQuery) -> int:
        """Bulk purge; without a status filter only terminal instances are purged."""
        if not query.runtime_status:
            query = InstanceQuery(
                tuple(sorted(TERMINAL_STATUSES)),
                query.created_from,
                query.created_to,
                query.instance_id_prefix,
            )
        deleted = 0
        for record in await self.store.iter_instances(query):
            self.scheduler.instances.pop(record.instance_id, None)
            deleted += int(await self.store.delete_instance(record.instance_id))
        return deleted
