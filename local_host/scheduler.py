"""The Durable worker: runs episodes, activities and durable timers of one task hub.

Like DTFx's orchestration and activity dispatchers, each work item runs on its own: an activity's
result goes to its instance the moment the activity returns, and the instance's next episode runs
as soon as an orchestrator slot is free, whatever other activities are still running. At most
``maxConcurrentOrchestratorFunctions`` episodes and ``maxConcurrentActivityFunctions`` activities
run at once, and an activity that runs longer than ``functionTimeout`` fails with the host's
timeout error.

Every change of an instance is written before anything depends on it: an episode's activities,
timers and sub-orchestrations start only once its atomic write (see :mod:`local_host.persistence`)
is done. After a crash, :meth:`Scheduler.resume` rebuilds the outstanding work from storage:
activities whose result is not recorded run again (at least once, as in Azure), timers are set
again, sub-orchestrations are started or asked for their outcome.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import traceback
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from . import killpoints
from .clock import VirtualClock
from .history import Event, EventType, event
from .hostconfig import HostConfig
from .indexing import ACTIVITY_TRIGGER, ORCHESTRATION_TRIGGER, IndexedFunction
from .invocation import call_with_timeout
from .orchestration import (
    TERMINAL_STATUSES,
    ChildStart,
    Episode,
    EpisodeRunner,
    Instance,
    ParentLink,
    missing_function,
    parse_fire_at,
    validate_instance_id,
)
from .persistence import DurableStore, InstanceConflict

log = logging.getLogger("local_host.scheduler")


class DurableError(Exception):
    """Base of the management errors the HTTP routes map to status codes."""


class InstanceNotFound(DurableError):
    pass


class InstanceGone(DurableError):
    """The instance is in a terminal state (410 for terminate / raiseEvent)."""


class InstanceExists(DurableError):
    """A non-terminal instance with this id exists (409 on start, as the extension does)."""


class InstanceNotTerminal(DurableError):
    """Purge of a running instance (412)."""


class UnknownFunction(DurableError, ValueError):
    pass


@dataclass(order=True)
class _Timer:
    due: datetime
    order: int
    instance_id: str = field(compare=False)
    execution_id: str = field(compare=False)
    timer_id: int = field(compare=False)
    fire_at: str = field(compare=False)


@dataclass(frozen=True)
class ActivityWork:
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


class Scheduler:
    """Runs the orchestrations and activities of one task hub against a :class:`DurableStore`."""

    def __init__(
        self,
        functions: Mapping[str, IndexedFunction],
        store: DurableStore,
        clock: VirtualClock,
        config: HostConfig,
    ) -> None:
        self.orchestrators = {n: f for n, f in functions.items() if f.trigger_type == ORCHESTRATION_TRIGGER}
        self.activities = {n: f for n, f in functions.items() if f.trigger_type == ACTIVITY_TRIGGER}
        self.runner = EpisodeRunner(
            {n: f.user_function for n, f in self.orchestrators.items()}, frozenset(self.activities)
        )
        self.store = store
        self.clock = clock
        self.config = config
        self.instances: dict[str, Instance] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loading: dict[str, asyncio.Future[Instance | None]] = {}
        self._ready: dict[str, None] = {}
        self._activity_queue: deque[ActivityWork] = deque()
        self._episodes: set[asyncio.Task[None]] = set()
        self._activity_tasks: set[asyncio.Task[None]] = set()
        self._other_tasks: set[asyncio.Task[None]] = set()
        self._timers: list[_Timer] = []
        self._order = 0
        self._wake = asyncio.Event()
        self._failures: list[BaseException] = []
        self.recorded_episodes = 0
        self._threads = ThreadPoolExecutor(
            max_workers=config.max_concurrent_activities + 4, thread_name_prefix="activity"
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    def lock(self, instance_id: str) -> asyncio.Lock:
        lock = self._locks.get(instance_id)
        if lock is None:
            lock = self._locks[instance_id] = asyncio.Lock()
        return lock

    def _mark_ready(self, inst: Instance) -> None:
        if inst.runnable:
            self._ready[inst.instance_id] = None
            self._wake.set()

    def enqueue(self, inst: Instance, item: Event) -> None:
        """Hand a message to an instance (dropped when it duplicates one the instance has)."""
        if inst.enqueue(item):
            self._mark_ready(inst)

    def _spawn(self, work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, tasks))

    def _finished(self, task: asyncio.Task[None], tasks: set[asyncio.Task[None]]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failures.append(task.exception())  # type: ignore[arg-type]
        self._wake.set()

    def _push_timer(self, inst: Instance, timer_id: int, fire_at: str) -> None:
        self._order += 1
        heapq.heappush(
            self._timers,
            _Timer(
                parse_fire_at(fire_at), self._order, inst.instance_id, inst.execution_id, timer_id, fire_at
            ),
        )

    def _live_timer(self, timer: _Timer) -> Instance | None:
        inst = self.instances.get(timer.instance_id)
        if (
            inst is None
            or inst.execution_id != timer.execution_id
            or timer.timer_id not in inst.replay.pending_timers
            or timer.timer_id in inst.resolved
        ):
            return None
        return inst

    def next_timer_due(self) -> datetime | None:
        while self._timers:
            if self._live_timer(self._timers[0]) is not None:
                return self._timers[0].due
            heapq.heappop(self._timers)
        return None

    def fire_due_timers(self) -> bool:
        """Deliver TimerFired for every live timer due at or before the virtual now."""
        now = self.clock.now()
        fired = False
        while self._timers and self._timers[0].due <= now:
            timer = heapq.heappop(self._timers)
            inst = self._live_timer(timer)
            if inst is not None:
                self.enqueue(
                    inst, event(EventType.TimerFired, now, TimerId=timer.timer_id, FireAt=timer.fire_at)
                )
                fired = True
        return fired

    # -- running --------------------------------------------------------------------------------

    async def run_until_quiet(self) -> None:
        """Run episodes and activities until none is ready or running (timers are not fired)."""
        while True:
            self._raise_failures()
            self._dispatch()
            if not (self._episodes or self._activity_tasks or self._other_tasks):
                self._raise_failures()
                return
            self._wake.clear()
            await self._wake.wait()

    def _raise_failures(self) -> None:
        if self._failures:
            failure, self._failures = self._failures[0], []
            raise failure

    def _dispatch(self) -> None:
        while self._ready and len(self._episodes) < self.config.max_concurrent_orchestrators:
            instance_id = next(iter(self._ready))
            del self._ready[instance_id]
            inst = self.instances.get(instance_id)
            if inst is None or not inst.runnable or self.lock(instance_id).locked():
                continue  # a write in flight marks it ready again when it is done
            self._spawn(self._episode(inst), self._episodes)
        while self._activity_queue and len(self._activity_tasks) < self.config.max_concurrent_activities:
            self._spawn(self._activity(self._activity_queue.popleft()), self._activity_tasks)

    async def _episode(self, inst: Instance) -> None:
        async with self.lock(inst.instance_id):
            if not inst.runnable or self.instances.get(inst.instance_id) is not inst:
                return
            episode = self.runner.run(inst, self.clock.now())
            if episode is None:
                inst.waiting = True
                return
            await self.write(inst)
            self.recorded_episodes += 1
            killpoints.passed("episode-committed")
        self._after_episode(inst, episode)

    def _after_episode(self, inst: Instance, episode: Episode) -> None:
        for call in episode.activities:
            self._activity_queue.append(
                ActivityWork(inst.instance_id, episode.execution_id, call.task_id, call.name, call.input)
            )
        for timer in episode.timers:
            self._push_timer(inst, timer.timer_id, timer.fire_at)
        for child in episode.children:
            self._spawn(self._start_child(child), self._other_tasks)
        self.settled(inst)

    def settled(self, inst: Instance) -> None:
        """After a write: notify the parent of a finished child, unload it, or run it again."""
        if inst.is_terminal:
            if inst.parent is not None:
                self._spawn(
                    self._notify_parent(inst.parent, inst.status, inst.output, inst.instance_id),
                    self._other_tasks,
                )
            if self.instances.get(inst.instance_id) is inst and not self.lock(inst.instance_id).locked():
                del self.instances[inst.instance_id]
                self._locks.pop(inst.instance_id, None)
        else:
            self._mark_ready(inst)

    async def write(self, inst: Instance, *, create: bool = False) -> None:
        """Write the instance's row (status, state, messages, history): one atomic write."""
        fields: dict[str, Any] = {
            "Name": inst.name,
            "RuntimeStatus": inst.status,
            "CreatedTime": inst.created,
            "LastUpdatedTime": inst.last_updated,
            "ExecutionId": inst.execution_id,
            "ParentInstanceId": inst.parent.instance_id if inst.parent else None,
            "Version": inst.version + 1,
        }
        texts = {
            "Input": inst.input,
            "Output": inst.output,
            "CustomStatus": inst.custom_status,
            "State": json.dumps(inst.engine_state()),
            "History": inst.history_json(),
        }
        await self.store.write(
            self.store.instance_write(instance_id=inst.instance_id, fields=fields, texts=texts, create=create)
        )
        inst.version += 1

    async def _activity(self, work: ActivityWork) -> None:
        inst = self.instances.get(work.instance_id)
        if inst is None or inst.execution_id != work.execution_id or inst.is_terminal:
            return
        result = await self._call_activity(work)
        killpoints.passed("activity-finished")
        inst = self.instances.get(work.instance_id)
        if inst is not None and inst.execution_id == work.execution_id and not inst.is_terminal:
            self.enqueue(inst, result)

    async def _call_activity(self, work: ActivityWork) -> Event:
        function = self.activities.get(work.name)
        try:
            if function is None:
                raise LookupError(missing_function(work.name, "activity"))
            value = (
                ActivityTriggerConverter.decode(meta.Datum(work.input, "json"), trigger_metadata=None)
                if work.input is not None
                else None
            )
            kwargs = {function.trigger_param: value}
            output = await call_with_timeout(
                function, kwargs, self.config.function_timeout, executor=self._threads
            )
            result_json = ActivityTriggerConverter.encode(output, expected_type=None).value
            return event(
                EventType.TaskCompleted, self.clock.now(), TaskScheduledId=work.task_id, Result=result_json
            )
        except Exception as exc:
            log.info("activity %s (%s #%d) failed: %r", work.name, work.instance_id, work.task_id, exc)
            return event(
                EventType.TaskFailed,
                self.clock.now(),
                TaskScheduledId=work.task_id,
                Reason=f"Activity function '{work.name}' failed: {type(exc).__name__}: {exc}",
                Details="".join(traceback.format_exception(exc)),
            )

    # -- instances ------------------------------------------------------------------------------

    async def start_instance(
        self, name: str, instance_id: str | None, input_json: str | None, *, parent: ParentLink | None = None
    ) -> str:
        """Create an instance (Pending); an existing non-terminal id raises :class:`InstanceExists`."""
        if name not in self.orchestrators:
            raise UnknownFunction(missing_function(name, "orchestrator"))
        instance_id = instance_id or uuid.uuid4().hex
        validate_instance_id(instance_id)
        async with self.lock(instance_id):
            existing = self.instances.get(instance_id)
            if existing is not None and not existing.is_terminal:
                raise InstanceExists(f"An Orchestration instance with the ID '{instance_id}' already exists.")
            inst = Instance.started(
                name, instance_id, input_json, self.clock.now(), parent, existing.version if existing else 0
            )
            try:
                await self.write(inst, create=existing is None)
            except InstanceConflict:
                record = await self.store.read_instance(instance_id)
                if record is None or record.execution_id != inst.execution_id:  # not our own late answer
                    if record is not None and record.runtime_status not in TERMINAL_STATUSES:
                        raise InstanceExists(
                            f"An Orchestration instance with the ID '{instance_id}' already exists."
                        ) from None
                    inst.version = int(record.row.get("Version", 0)) if record is not None else 0
                    await self.write(inst)
            killpoints.passed("instance-started")
            self.instances[instance_id] = inst
        self._mark_ready(inst)
        return instance_id

    async def _start_child(self, child: ChildStart) -> None:
        # The action's input is the SDK's JSON text; the extension passes it on as a JSON string.
        input_json = json.dumps(child.input) if child.input is not None else None
        try:
            await self.start_instance(child.name, child.instance_id, input_json, parent=child.parent)
        except InstanceExists as exc:
            existing = await self.load(child.instance_id)
            if existing is None or existing.parent != child.parent:
                await self._notify_parent(child.parent, "Failed", str(exc), child.instance_id)
        except ValueError as exc:
            await self._notify_parent(child.parent, "Failed", str(exc), child.instance_id)

    async def _notify_parent(self, link: ParentLink, status: str, output: str | None, child_id: str) -> None:
        parent = await self.load(link.instance_id)
        if parent is None or parent.execution_id != link.execution_id or parent.is_terminal:
            return
        now = self.clock.now()
        if status == "Completed":
            note = event(
                EventType.SubOrchestrationInstanceCompleted, now, TaskScheduledId=link.task_id, Result=output
            )
        else:
            note = event(
                EventType.SubOrchestrationInstanceFailed,
                now,
                TaskScheduledId=link.task_id,
                Reason=output or f"Sub-orchestration '{child_id}' ended with status {status}",
                Details=f"instance {child_id} {status}",
            )
        self.enqueue(parent, note)

    async def load(self, instance_id: str) -> Instance | None:
        """The instance, from memory or storage; an unfinished one stays loaded with its work."""
        inst = self.instances.get(instance_id)
        if inst is not None:
            return inst
        loading = self._loading.get(instance_id)
        if loading is None:  # one read per instance, however many ask at once
            loading = self._loading[instance_id] = asyncio.ensure_future(self._load(instance_id))
            loading.add_done_callback(lambda _: self._loading.pop(instance_id, None))
        return await asyncio.shield(loading)

    async def _load(self, instance_id: str) -> Instance | None:
        record = await self.store.read_instance(instance_id)
        if record is None:
            return None
        inst = Instance.from_row(record.row)
        if instance_id in self.instances:  # started while we read
            return self.instances[instance_id]
        if not inst.is_terminal:
            self.instances[instance_id] = inst
            await self._rebuild(inst)
        return inst

    async def resume(self) -> int:
        """Load every unfinished instance and rebuild its outstanding work."""
        loaded: list[Instance] = []
        for record in await self.store.load_unfinished():
            if record.instance_id not in self.instances:
                inst = Instance.from_row(record.row)
                self.instances[inst.instance_id] = inst
                loaded.append(inst)
        for inst in loaded:
            await self._rebuild(inst)
        return len(loaded)

    async def _rebuild(self, inst: Instance) -> None:
        """Work an instance still waits for, from its history: activities without a result, live
        timers, sub-orchestrations without an outcome."""
        if inst.is_terminal:
            return
        for e in inst.history:
            kind, seq = e["EventType"], e["EventId"]
            if seq in inst.resolved:
                continue
            if kind == EventType.TaskScheduled:
                self._activity_queue.append(
                    ActivityWork(inst.instance_id, inst.execution_id, seq, e["Name"], e.get("Input"))
                )
            elif kind == EventType.TimerCreated and seq in inst.replay.pending_timers:
                self._push_timer(inst, seq, e["FireAt"])
            elif kind == EventType.SubOrchestrationInstanceCreated:
                await self._reconnect_child(inst, e)
        self._mark_ready(inst)

    async def _reconnect_child(self, parent: Instance, created: Event) -> None:
        child_id = created["InstanceId"]
        link = ParentLink(parent.instance_id, parent.execution_id, created["EventId"])
        if child_id in self.instances:
            return
        record = await self.store.read_instance(child_id)
        if record is None:
            self._spawn(
                self._start_child(ChildStart(link, child_id, created["Name"], created.get("Input"))),
                self._other_tasks,
            )
        elif record.runtime_status in TERMINAL_STATUSES:
            await self._notify_parent(link, record.runtime_status, record.row.get("Output"), child_id)

    # -- stopping -------------------------------------------------------------------------------

    async def stop(self) -> None:
        """A graceful stop: activities in flight are abandoned (they run again after a restart),
        episodes in flight finish, and every instance holding unrecorded messages is written."""
        for task in list(self._activity_tasks):
            task.cancel()
        await asyncio.gather(
            *self._activity_tasks, *self._episodes, *self._other_tasks, return_exceptions=True
        )
        pending = [inst for inst in self.instances.values() if inst.inbox and not inst.is_terminal]
        await asyncio.gather(*(self._write_locked(inst) for inst in pending))
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _write_locked(self, inst: Instance) -> None:
        async with self.lock(inst.instance_id):
            await self.write(inst)
