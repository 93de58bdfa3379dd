"""``LocalHost``: runs a v2 function app the way the Functions host would, without the host.

It indexes ``app.get_functions()`` and obeys the app root's ``host.json``; delivers Event Hub
events from the checkpoint on (:mod:`local_host.eventhubs`), timer ticks and HTTP requests; runs
orchestrations through the real Durable SDK replay (:mod:`local_host.orchestration`,
:mod:`local_host.scheduler`) with state in Azure Storage (:mod:`local_host.persistence`); and
serves the Durable HTTP management API (:mod:`local_host.http_api`) and the app's HTTP functions
(:mod:`local_host.http_triggers`) on loopback. Time is a :class:`VirtualClock`, kept in storage
so a restarted host resumes from the latest time stored, and installed as the app's clock
(``shared.clock.utc_now``) while the host runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.utils import http_utils

from shared.clock import install_clock, remove_clock

from . import killpoints
from .clock import VirtualClock
from .eventhubs import (
    Checkpoint,
    CheckpointStore,
    EventData,
    Partition,
    checkpoint_blob_name,
    namespace_of,
    trigger_input,
)
from .history import Event, install_timestamp_cache
from .hostconfig import HostConfig
from .http_api import RPC_PREFIX, WEBHOOK_PREFIX, ManagementApi, ManagementUrls
from .http_triggers import FunctionKeys, HttpTriggers
from .indexing import EVENT_HUB_TRIGGER, TIMER_TRIGGER, IndexedFunction, index_app
from .invocation import DeliveryOutcome, build_timer_request, invoke_with_retries
from .management import InstanceStatus, Management
from .persistence import DurableStore
from .scheduler import Scheduler

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
        app_root: Path | None = None,
        host_keys: Sequence[str] = (),
        master_key: str | None = None,
        function_keys: Mapping[str, Sequence[str]] | None = None,
        port: int = 0,
        schedule_timers: bool = False,
    ) -> None:
        self.settings = dict(settings_env)
        self.functions: dict[str, IndexedFunction] = index_app(app, self.settings)
        self.config = HostConfig.load(app_root)
        self.clock = clock
        self.task_hub = (
            task_hub
            or self.config.task_hub(self.settings)
            or self.settings.get("TASKHUB_NAME")
            or DEFAULT_TASK_HUB
        )
        self.host_keys = tuple(host_keys) or (secrets.token_urlsafe(24),)
        self.keys = FunctionKeys(
            host=frozenset(self.host_keys),
            master=master_key or secrets.token_urlsafe(24),
            functions={name: frozenset(keys) for name, keys in (function_keys or {}).items()},
        )
        self.store = DurableStore(
            connection_string, self.task_hub, partition_count=self.config.partition_count
        )
        self.scheduler = Scheduler(self.functions, self.store, clock, self.config)
        self.management = Management(self.scheduler)
        self.checkpoints = CheckpointStore(self.store.connection_string)
        self._port = port
        self._runner: web.AppRunner | None = None
        self._urls: ManagementUrls | None = None
        self._rpc_base_url = ""
        self._partitions: dict[tuple[str, str], Partition] = {}
        self._schedule_timers = schedule_timers
        self._next_schedule: dict[str, datetime] = {}
        self._last_schedule: dict[str, datetime] = {}
        self._run_lock = asyncio.Lock()
        self._clock_lock = asyncio.Lock()
        self._clock_saved: datetime | None = None
        install_timestamp_cache()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage, resume the clock, serve the HTTP routes, resume unfinished instances."""
        await self.store.open(before_commit=self.save_clock)
        stored = await self.store.read_clock()
        if stored is not None:
            self._clock_saved = stored
            self.clock.advance_to(stored)
        await self.save_clock()
        install_clock(self.clock)
        api = ManagementApi(self.management, self._urls_placeholder(), self.host_keys)
        application = web.Application()
        api.add_routes(application)
        HttpTriggers(
            self.functions,
            route_prefix=self.config.route_prefix,
            keys=self.keys,
            bindings=self._client_bindings,
            timeout=self.config.function_timeout,
        ).add_routes(application)
        self._runner = web.AppRunner(application, access_log=None)
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
        api.urls = self._urls
        self._rpc_base_url = f"http://127.0.0.1:{port}{RPC_PREFIX}/"
        if self._schedule_timers:
            now = self.clock.now()
            for fn in self.functions.values():
                if fn.schedule is not None:
                    self._next_schedule[fn.name] = fn.schedule.next_after(now)
        resumed = await self.scheduler.resume()
        log.info(
            "local host for task hub %s on port %d; resumed %d instance(s)", self.task_hub, port, resumed
        )

    def _urls_placeholder(self) -> ManagementUrls:
        return ManagementUrls("", self.task_hub, STORAGE_CONNECTION_NAME, self.host_keys[0])

    async def stop(self) -> None:
        """A graceful stop: write what memory holds, stop serving, close clients (idempotent)."""
        if self._runner is None:
            return
        await self.scheduler.stop()
        await self._runner.cleanup()
        self._runner = None
        await self.checkpoints.close()
        await self.store.close()
        remove_clock(self.clock)
        # The SDK keeps one process-wide aiohttp session; close it so the next event loop gets a new one.
        await http_utils._close_session()

    async def __aenter__(self) -> LocalHost:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- the clock ------------------------------------------------------------------------------

    async def save_clock(self) -> None:
        """Write the clock's time if it moved past the stored one (before anything stamped later
        is written, so a resumed host never starts earlier than what storage has seen)."""
        if self._clock_saved is not None and self.clock.now() <= self._clock_saved:
            return
        async with self._clock_lock:
            now = self.clock.now()
            if self._clock_saved is None or now > self._clock_saved:
                await self.store.write_clock(now)
                self._clock_saved = now
                killpoints.passed("clock-written")

    async def advance_clock_to(self, moment: datetime) -> None:
        """Move the virtual clock forward to ``moment`` (stored first); earlier moments are ignored."""
        if moment <= self.clock.now():
            return
        async with self._clock_lock:
            if self._clock_saved is None or moment > self._clock_saved:
                await self.store.write_clock(moment)
                self._clock_saved = moment
                killpoints.passed("clock-written")
        self.clock.advance_to(moment)

    async def _wait(self, delay: timedelta) -> None:
        await self.advance_clock_to(self.clock.now() + delay)

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
    def http_base_url(self) -> str:
        """Where HTTP functions are served (``http://127.0.0.1:<port>/<routePrefix>``)."""
        origin = self.urls.base_url.removesuffix(WEBHOOK_PREFIX)
        return f"{origin}/{self.config.route_prefix}" if self.config.route_prefix else origin

    @property
    def master_key(self) -> str:
        return self.keys.master

    @property
    def client_binding(self) -> dict[str, Any]:
        return self.urls.client_binding(self._rpc_base_url)

    @property
    def client_binding_json(self) -> str:
        """The string the host passes for a ``durableClient`` parameter."""
        return json.dumps(self.client_binding)

    def durable_client(self) -> DurableOrchestrationClient:
        return DurableOrchestrationClient(self.client_binding_json)

    def _client_bindings(self, function: IndexedFunction) -> dict[str, Any]:
        return {name: self.client_binding_json for name in function.client_params}

    # -- Event Hubs -----------------------------------------------------------------------------

    def _listeners(self, hub_name: str) -> list[IndexedFunction]:
        targets = [
            f
            for f in self.functions.values()
            if f.trigger_type == EVENT_HUB_TRIGGER and f.event_hub_name == hub_name
        ]
        if not targets:
            raise LookupError(f"no Event Hub trigger listens on {hub_name!r}")
        return targets

    def _checkpoint_name(self, function: IndexedFunction, hub_name: str, partition_id: str) -> str:
        namespace = namespace_of(self.settings, function.trigger.get("connection"))
        return checkpoint_blob_name(namespace, hub_name, function.consumer_group, partition_id)

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
        """Publish ``bodies`` to the partition, then deliver it to every function listening on
        ``hub_name`` from its consumer group's checkpoint on. A partition the host has not seen
        since it started continues after the latest checkpoint. ``enqueued_times`` (one per body)
        replays messages with the times the hub gave them first; by default they are enqueued now."""
        for name, values in (("properties", properties), ("enqueued_times", enqueued_times)):
            if values is not None and len(values) != len(bodies):
                raise ValueError(f"{name} must have one entry per body")
        targets = self._listeners(hub_name)
        partition = self._partitions.get((hub_name, partition_id))
        if partition is None:
            partition = Partition()
            checkpoints = [
                await self.checkpoints.read(self._checkpoint_name(f, hub_name, partition_id)) for f in targets
            ]
            latest = max(
                (c for c in checkpoints if c is not None), key=lambda c: c.sequence_number, default=None
            )
            if latest is not None:
                partition.first_sequence, partition.first_offset = (
                    latest.sequence_number + 1,
                    latest.offset + 1,
                )
            self._partitions[(hub_name, partition_id)] = partition
        now = self.clock.now()
        for index, body in enumerate(bodies):
            partition.append(
                EventData(
                    body,
                    partition_key,
                    properties[index] if properties else None,
                    enqueued_times[index] if enqueued_times else None,
                ),
                now,
            )
        return await self._deliver(hub_name, partition_id, targets)

    async def deliver_partition(
        self, hub_name: str, partition_id: str, events: Sequence[EventData | bytes | str]
    ) -> list[DeliveryOutcome]:
        """Offer one partition's whole content (sequence numbers 0, 1, ... in order) and deliver
        what follows each consumer group's checkpoint, in batches of ``maxEventBatchSize``, with a
        checkpoint after each batch whose function succeeded. Offering the same events again
        (after a restart or a crash) delivers only what is not checkpointed. Events without an
        ``enqueued_time`` are stamped with the virtual now."""
        targets = self._listeners(hub_name)
        partition = Partition()
        now = self.clock.now()
        for item in events:
            partition.append(item, now)
        self._partitions[(hub_name, partition_id)] = partition
        return await self._deliver(hub_name, partition_id, targets)

    async def _deliver(
        self, hub_name: str, partition_id: str, targets: list[IndexedFunction]
    ) -> list[DeliveryOutcome]:
        partition = self._partitions[(hub_name, partition_id)]
        outcomes: list[DeliveryOutcome] = []
        size = max(self.config.max_event_batch_size, 1)
        for function in targets:
            name = self._checkpoint_name(function, hub_name, partition_id)
            checkpoint = await self.checkpoints.read(name)
            pending = partition.after(checkpoint.sequence_number if checkpoint else None)
            for start in range(0, len(pending), size):
                batch = pending[start : start + size]
                await self.save_clock()
                inputs = trigger_input(
                    batch,
                    cardinality_many=function.cardinality_many,
                    namespace=namespace_of(self.settings, function.trigger.get("connection")),
                    hub_name=hub_name,
                    consumer_group=function.consumer_group,
                    partition_id=partition_id,
                    function_name=function.name,
                    now=self.clock.now(),
                )
                results = (
                    [await self._invoke(function, inputs)]
                    if function.cardinality_many
                    else [await self._invoke(function, item) for item in inputs]
                )
                outcomes.extend(results)
                if not all(r.succeeded for r in results):
                    break  # no checkpoint: the batch comes again with the next delivery or restart
                killpoints.passed("batch-processed")
                last = batch[-1]
                await self.checkpoints.write(name, Checkpoint(last.sequence_number, last.offset))
                killpoints.passed("checkpoint-written")
        return outcomes

    async def checkpoint(self, hub_name: str, partition_id: str, function_name: str) -> Checkpoint | None:
        """The stored checkpoint of a function's consumer group for one partition."""
        function = self.functions[function_name]
        return await self.checkpoints.read(self._checkpoint_name(function, hub_name, partition_id))

    # -- timers ---------------------------------------------------------------------------------

    async def fire_timer(self, function_name: str, *, past_due: bool = False) -> DeliveryOutcome:
        """Invoke a timer-trigger function now."""
        function = self.functions.get(function_name)
        if function is None or function.trigger_type != TIMER_TRIGGER:
            raise LookupError(f"{function_name!r} is not a timer-trigger function")
        await self.save_clock()
        now = self.clock.now()
        next_due = function.schedule.next_after(now) if function.schedule else None
        request = build_timer_request(
            past_due=past_due, last=self._last_schedule.get(function_name), next_due=next_due
        )
        self._last_schedule[function_name] = now
        return await self._invoke(function, request)

    async def _invoke(self, function: IndexedFunction, trigger_value: Any) -> DeliveryOutcome:
        return await invoke_with_retries(
            function,
            trigger_value,
            bindings=self._client_bindings(function),
            timeout=self.config.function_timeout,
            wait=self._wait,
        )

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
        return await self.management.start(name, instance_id, body)

    async def _settle(self) -> bool:
        """Run until quiet, then fire what is due; True if something was fired."""
        await self.scheduler.run_until_quiet()
        if self.scheduler.fire_due_timers():
            return True
        return await self._fire_due_schedules()

    async def run_until_idle(self, *, advance_clock: bool = True) -> None:
        """Run everything runnable; when nothing is, move the clock to the next durable timer
        (firing scheduled timer triggers it passes), until no work is left."""
        async with self._run_lock:
            while True:
                if await self._settle():
                    continue
                due = self.scheduler.next_timer_due() if advance_clock else None
                if due is None:
                    return
                schedule_due = min(self._next_schedule.values(), default=None)
                await self.advance_clock_to(min(due, schedule_due) if schedule_due else due)

    async def run_until(self, moment: datetime) -> None:
        """Run and advance the clock up to ``moment``, firing durable timers and scheduled timer
        triggers in time order; the clock ends at ``moment``."""
        async with self._run_lock:
            while True:
                if await self._settle():
                    continue
                candidates = [
                    t for t in (self.scheduler.next_timer_due(), *self._next_schedule.values()) if t
                ]
                upcoming = [t for t in candidates if t <= moment]
                if upcoming:
                    await self.advance_clock_to(min(upcoming))
                    continue
                if self.clock.now() >= moment:
                    return
                await self.advance_clock_to(moment)

    # -- inspection -----------------------------------------------------------------------------

    async def get_status(self, instance_id: str) -> InstanceStatus | None:
        return await self.management.status(instance_id)

    async def get_history(self, instance_id: str) -> list[Event]:
        """The instance's DTFx history (EventType/EventId/... as the SDK receives it); ``IsPlayed``
        is true for events of finished episodes, false for the latest episode."""
        status = await self.management.status(instance_id, with_history=True)
        if status is None or status.history is None:
            raise LookupError(f"no instance {instance_id!r}")
        return status.history
