"""``LocalHost``: runs a v2 function app the way the Functions host would, without the host.

It indexes ``app.get_functions()``, delivers Event Hub batches and timer ticks, runs orchestrations
through the real Durable SDK replay (:mod:`local_host.engine`) with state in Azure Storage, and serves
the Durable HTTP management API on loopback (:mod:`local_host.http_api`)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from aiohttp import web
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.utils import http_utils

from .clock import VirtualClock
from .engine import DurableEngine, InstanceStatus
from .history import Event, install_timestamp_cache
from .http_api import RPC_PREFIX, WEBHOOK_PREFIX, ManagementApi, ManagementUrls
from .indexing import EVENT_HUB_TRIGGER, TIMER_TRIGGER, IndexedFunction, index_app
from .invocation import (
    DeliveryOutcome,
    PartitionCursor,
    build_event_hub_batch,
    build_timer_request,
    invoke_with_retries,
)
from .store import DurableStore

log = logging.getLogger("local_host")

DEFAULT_TASK_HUB = "TestHubName"
STORAGE_CONNECTION_NAME = "AzureWebJobsStorage"


class LocalHost:
    """One function app on a virtual clock; use ``async with`` or ``start()`` / ``stop()``."""

    def __init__(
        self,
        app: Any,
        *,
        connection_string: str,
        settings_env: Mapping[str, str],
        clock: VirtualClock,
        task_hub: str | None = None,
        host_keys: Sequence[str] = (),
        port: int = 0,
        max_concurrent_activities: int = 16,
        schedule_timers: bool = False,
    ) -> None:
        self.settings = dict(settings_env)
        self.functions: dict[str, IndexedFunction] = index_app(app, self.settings)
        self.clock = clock
        self.task_hub = task_hub or self.settings.get("TASKHUB_NAME") or DEFAULT_TASK_HUB
        self.host_keys = tuple(host_keys) or (secrets.token_urlsafe(24),)
        self.store = DurableStore(connection_string, self.task_hub)
        self.engine = DurableEngine(
            self.functions, self.store, clock, max_concurrent_activities=max_concurrent_activities
        )
        self._port = port
        self._runner: web.AppRunner | None = None
        self._urls: ManagementUrls | None = None
        self._rpc_base_url = ""
        self._cursors: dict[tuple[str, str], PartitionCursor] = {}
        self._schedule_timers = schedule_timers
        self._next_schedule: dict[str, datetime] = {}
        self._last_schedule: dict[str, datetime] = {}
        self._run_lock = asyncio.Lock()
        install_timestamp_cache()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage, serve the management API, and resume unfinished instances."""
        await self.store.open()
        api_app = ManagementApi(self.engine, self._urls_placeholder(), self.host_keys)
        self._runner = web.AppRunner(api_app.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self._urls = ManagementUrls(
            base_url=f"http://127.0.0.1:{port}{WEBHOOK_PREFIX}",
            task_hub=self.task_hub,
            connection=STORAGE_CONNECTION_NAME,
            code=self.host_keys[0],
        )
        api_app.urls = self._urls
        self._rpc_base_url = f"http://127.0.0.1:{port}{RPC_PREFIX}/"
        if self._schedule_timers:
            now = self.clock.now()
            for fn in self.functions.values():
                if fn.schedule is not None:
                    self._next_schedule[fn.name] = fn.schedule.next_after(now)
        resumed = await self.engine.resume_from_store()
        log.info(
            "local host for task hub %s on port %d; resumed %d instance(s)", self.task_hub, port, resumed
        )

    def _urls_placeholder(self) -> ManagementUrls:
        return ManagementUrls("", self.task_hub, STORAGE_CONNECTION_NAME, self.host_keys[0])

    async def stop(self) -> None:
        """Persist every in-memory instance, stop serving, close clients (idempotent)."""
        if self._runner is None:
            return
        await self.engine.flush()
        await self._runner.cleanup()
        self._runner = None
        await self.store.close()
        # The SDK keeps one process-wide aiohttp session; close it so the next event loop gets a new one.
        await http_utils._close_session()

    async def __aenter__(self) -> LocalHost:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- durable client -------------------------------------------------------------------------

    @property
    def urls(self) -> ManagementUrls:
        if self._urls is None:
            raise RuntimeError("LocalHost.start() has not been called")
        return self._urls

    @property
    def base_url(self) -> str:
        """Webhook base (``.../runtime/webhooks/durabletask``); requests need ``?code=<host key>``."""
        return self.urls.base_url

    @property
    def client_binding(self) -> dict[str, Any]:
        return self.urls.client_binding(self._rpc_base_url)

    @property
    def client_binding_json(self) -> str:
        """The string the host passes for a ``durableClient`` parameter."""
        return json.dumps(self.client_binding)

    def durable_client(self) -> DurableOrchestrationClient:
        return DurableOrchestrationClient(self.client_binding_json)

    # -- triggers -------------------------------------------------------------------------------

    async def deliver_event_hub(
        self,
        hub_name: str,
        bodies: Sequence[bytes | str],
        *,
        partition_id: str = "0",
        partition_key: str | None = None,
        properties: Sequence[dict[str, Any]] | None = None,
        enqueued_times: Sequence[datetime] | None = None,
    ) -> list[DeliveryOutcome]:
        """Deliver one batch to every Event Hub function listening on ``hub_name`` (its own consumer
        group each); a failing function gets the same batch again while its retry policy allows.
        ``enqueued_times`` (one per body) replays messages with the times the hub gave them first;
        by default every message is enqueued now."""
        targets = [
            f
            for f in self.functions.values()
            if f.trigger_type == EVENT_HUB_TRIGGER and f.event_hub_name == hub_name
        ]
        if not targets:
            raise LookupError(f"no Event Hub trigger listens on {hub_name!r}")
        outcomes = []
        for function in targets:
            consumer_group = function.trigger.get("consumerGroup") or "$Default"
            cursor = self._cursors.setdefault((hub_name, partition_id), PartitionCursor())
            events = build_event_hub_batch(
                hub_name=hub_name,
                consumer_group=consumer_group,
                partition_id=partition_id,
                bodies=bodies,
                cursor=PartitionCursor(cursor.next_sequence, cursor.next_offset),
                enqueued_time=self.clock.now(),
                enqueued_times=enqueued_times,
                partition_key=partition_key,
                properties=properties,
                function_name=function.name,
            )
            outcomes.append(await self._invoke(function, events))
        last = events[-1] if bodies else None
        if last is not None:
            cursor.next_sequence = int(last.sequence_number or 0) + 1
            cursor.next_offset = int(last.offset or 0) + len(last.get_body())
        return outcomes

    async def fire_timer(self, function_name: str, *, past_due: bool = False) -> DeliveryOutcome:
        """Invoke a timer-trigger function now."""
        function = self.functions.get(function_name)
        if function is None or function.trigger_type != TIMER_TRIGGER:
            raise LookupError(f"{function_name!r} is not a timer-trigger function")
        now = self.clock.now()
        next_due = function.schedule.next_after(now) if function.schedule else None
        request = build_timer_request(
            past_due=past_due, last=self._last_schedule.get(function_name), next_due=next_due
        )
        self._last_schedule[function_name] = now
        return await self._invoke(function, request)

    async def _invoke(self, function: IndexedFunction, trigger_value: Any) -> DeliveryOutcome:
        bindings = {name: self.client_binding_json for name in function.client_params}
        return await invoke_with_retries(function, trigger_value, bindings=bindings, clock=self.clock)

    async def _fire_due_schedules(self) -> bool:
        now = self.clock.now()
        fired = False
        for name, due in list(self._next_schedule.items()):
            if due <= now:
                schedule = self.functions[name].schedule
                assert schedule is not None
                self._next_schedule[name] = schedule.next_after(now)
                await self.fire_timer(name, past_due=schedule.next_after(due) <= now)
                fired = True
        return fired

    # -- running --------------------------------------------------------------------------------

    async def start_orchestration(
        self, name: str, input_: Any = None, *, instance_id: str | None = None
    ) -> str:
        """Start an orchestration directly, with the input encoded as ``client.start_new`` sends it
        (the SDK's JSON text, posted as a JSON string)."""
        body = None if input_ is None else json.dumps(json.dumps(input_))
        return await self.engine.start_instance(name, instance_id, body)

    async def run_until_idle(self, *, advance_clock: bool = True) -> None:
        """Run everything runnable; when nothing is, move the clock to the next durable timer
        (firing scheduled timer triggers it passes), until no work is left."""
        async with self._run_lock:
            while True:
                if await self._step():
                    continue
                due = self.engine.next_timer_due() if advance_clock else None
                if due is None:
                    return
                schedule_due = min(self._next_schedule.values(), default=None)
                self.clock.advance_to(min(due, schedule_due) if schedule_due else due)

    async def run_until(self, moment: datetime) -> None:
        """Run and advance the clock up to ``moment``, firing durable timers and scheduled timer
        triggers in time order; the clock ends at ``moment``."""
        async with self._run_lock:
            while True:
                if await self._step():
                    continue
                candidates = [t for t in (self.engine.next_timer_due(), *self._next_schedule.values()) if t]
                upcoming = [t for t in candidates if t <= moment]
                if upcoming:
                    self.clock.advance_to(min(upcoming))
                    continue
                if self.clock.now() >= moment:
                    return
                self.clock.advance_to(moment)

    async def _step(self) -> bool:
        if await self.engine.run_round():
            return True
        if self.engine.fire_due_timers():
            return True
        return await self._fire_due_schedules()

    # -- inspection -----------------------------------------------------------------------------

    async def get_status(self, instance_id: str) -> InstanceStatus | None:
        return await self.engine.status(instance_id)

    async def get_history(self, instance_id: str) -> list[Event]:
        """The instance's DTFx history (EventType/EventId/... as the SDK receives it); ``IsPlayed``
        is true for events of finished episodes, false for the latest episode."""
        status = await self.engine.status(instance_id, with_history=True)
        if status is None or status.history is None:
            raise LookupError(f"no instance {instance_id!r}")
        return status.history
