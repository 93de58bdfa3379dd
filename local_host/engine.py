"""The Durable engine: plays the part of the Durable extension + DTFx for the Python SDK.

Each episode calls the orchestrator's real SDK handle with the instance's history (context JSON in,
state JSON out, or the ``$OutOfProcData$`` exception on failure) and turns the new actions into DTFx
history events with the SDK's sequence numbers. Activities run in-process, timers fire on the virtual
clock, sub-orchestrations run on the same engine, and every episode is written to Azure Storage.

Scheduling is done in rounds (all ready episodes, then all queued activities), so event batching and
therefore the recorded histories are deterministic.

Sequence numbers: the SDK numbers tasks in the order it creates them; the flattened V3 action list
holds those tasks in that same order, except for the placeholders the SDK creates for the retry
timers and re-attempts of ``*_with_retry`` calls. Those are numbered while the SDK processes the
TaskFailed / TimerFired of the retried task, so the engine ends an episode's batch at such an event:
its placeholder id then always comes after the ids of the episode's new actions.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import traceback
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from .clock import VirtualClock
from .history import Event, EventType, event, played_view, timestamp
from .indexing import ACTIVITY_TRIGGER, ORCHESTRATION_TRIGGER, IndexedFunction
from .store import DurableStore, InstanceQuery, InstanceRecord

log = logging.getLogger("local_host.durable")

OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"
RUNNING_STATUSES = frozenset({"Pending", "Running", "Suspended", "ContinuedAsNew"})
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
_INVALID_ID_CHARS = frozenset("/\\#?")
# What the extension sends for the Azure Storage provider (V3 lets the SDK split long timers).
_CONTEXT_TAIL = (
    '"upperSchemaVersion":1,"upperSchemaVersionNew":2,'
    '"maximumShortTimerDuration":"6.00:00:00","longRunningTimerIntervalDuration":"3.00:00:00"}'
)


class ActionType:
    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    WHEN_ANY = 11
    WHEN_ALL = 12


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


def validate_instance_id(instance_id: str) -> None:
    """Reject ids the extension rejects (they are also invalid Table keys)."""
    if not instance_id or any(c in _INVALID_ID_CHARS or ord(c) < 32 for c in instance_id):
        raise ValueError(
            f"Instance ID {instance_id!r} contains invalid characters ('/', '\\\\', '#', '?' or control)"
        )
    if instance_id.startswith("@"):
        raise ValueError("Orchestration instance ids must not start with @")


def missing_function(name: str, kind: str) -> str:
    """The extension's message for a call to a function that is not in the app."""
    return f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function."


def parse_fire_at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class ParentLink:
    instance_id: str
    execution_id: str
    task_id: int


@dataclass
class RetryState:
    """Host-side retry bookkeeping of one ``*_with_retry`` call (DTFx's retry interceptor)."""

    kind: str  # "activity" or "orchestrator"
    name: str
    input: str | None
    child_instance_id: str | None
    first_retry_ms: int
    max_attempts: int
    attempt: int
    current_id: int


@dataclass
class Instance:
    """In-memory state of one orchestration instance; the store holds the same data."""

    instance_id: str
    name: str
    execution_id: str
    input: str | None
    status: str
    created: datetime
    last_updated: datetime
    parent: ParentLink | None = None
    output: str | None = None
    custom_status: str | None = None
    history: list[Event] = field(default_factory=list)
    inbox: list[Event] = field(default_factory=list)
    next_seq: int = 0
    known_actions: int = 0
    retries: dict[int, RetryState] = field(default_factory=dict)
    pending_timers: set[int] = field(default_factory=set)
    timer_ids_by_action: dict[int, int] = field(default_factory=dict)
    played_json: list[str] = field(default_factory=list, repr=False)
    persisted: int = 0
    reset_history: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def seq(self) -> int:
        value = self.next_seq
        self.next_seq += 1
        return value

    def append_history(self, events: list[Event]) -> None:
        self.history.extend(events)
        self.played_json.extend(json.dumps({**e, "IsPlayed": True}) for e in events)

    def engine_state(self) -> dict[str, Any]:
        return {
            "nextSeq": self.next_seq,
            "knownActions": self.known_actions,
            "retries": [asdict(r) for r in self.retries.values()],
            "pendingTimers": sorted(self.pending_timers),
            "timerIdsByAction": {str(k): v for k, v in self.timer_ids_by_action.items()},
            "inbox": self.inbox,
            "parent": asdict(self.parent) if self.parent else None,
        }

    def to_record(self) -> InstanceRecord:
        return InstanceRecord(
            instance_id=self.instance_id,
            name=self.name,
            runtime_status=self.status,
            created_time=self.created,
            last_updated_time=self.last_updated,
            execution_id=self.execution_id,
            input=self.input,
            output=self.output,
            custom_status=self.custom_status,
            parent_instance_id=self.parent.instance_id if self.parent else None,
            state=self.engine_state(),
        )

    @classmethod
    def from_record(cls, record: InstanceRecord, history: list[Event]) -> Instance:
        state = record.state
        parent = state.get("parent")
        inst = cls(
            instance_id=record.instance_id,
            name=record.name,
            execution_id=record.execution_id,
            input=record.input,
            status=record.runtime_status,
            created=record.created_time,
            last_updated=record.last_updated_time,
            parent=ParentLink(**parent) if parent else None,
            output=record.output,
            custom_status=record.custom_status,
            inbox=list(state.get("inbox", [])),
            next_seq=int(state.get("nextSeq", 0)),
            known_actions=int(state.get("knownActions", 0)),
            retries={r["current_id"]: RetryState(**r) for r in state.get("retries", [])},
            pending_timers=set(state.get("pendingTimers", [])),
            timer_ids_by_action={int(k): v for k, v in state.get("timerIdsByAction", {}).items()},
        )
        inst.append_history(history)
        inst.persisted = len(history)
        return inst


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


@dataclass(order=True)
class _Timer:
    due: datetime
    order: int
    instance_id: str = field(compare=False)
    execution_id: str = field(compare=False)
    timer_id: int = field(compare=False)
    fire_at: str = field(compare=False)


@dataclass
class _ActivityWork:
    order: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


@dataclass
class _ChildStart:
    parent: ParentLink
    instance_id: str
    name: str
    input: str | None


@dataclass
class _EpisodeOutcome:
    children: list[_ChildStart] = field(default_factory=list)


def _leaves(action: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if action.get("actionType") in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
        for child in action.get("compoundActions") or ():
            yield from _leaves(child)
    else:
        yield action


def _flatten(actions: list[list[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    return [leaf for group in actions for action in group for leaf in _leaves(action)]


def _retry_key(e: Event) -> int | None:
    kind = e["EventType"]
    if kind in (
        EventType.TaskFailed,
        EventType.SubOrchestrationInstanceFailed,
        EventType.TaskCompleted,
        EventType.SubOrchestrationInstanceCompleted,
    ):
        return int(e["TaskScheduledId"])
    if kind == EventType.TimerFired:
        return int(e["TimerId"])
    return None


class DurableEngine:
    """Runs orchestrations and activities of one task hub against a :class:`DurableStore`."""

    def __init__(
        self,
        functions: Mapping[str, IndexedFunction],
        store: DurableStore,
        clock: VirtualClock,
        *,
        max_concurrent_activities: int = 16,
    ) -> None:
        self.orchestrators = {n: f for n, f in functions.items() if f.trigger_type == ORCHESTRATION_TRIGGER}
        self.activities = {n: f for n, f in functions.items() if f.trigger_type == ACTIVITY_TRIGGER}
        self.store = store
        self.clock = clock
        self.instances: dict[str, Instance] = {}
        self._ready: dict[str, None] = {}
        self._activities: list[_ActivityWork] = []
        self._finished_activities: list[tuple[_ActivityWork, Event]] = []
        self._timers: list[_Timer] = []
        self._order = 0
        self._activity_slots = asyncio.Semaphore(max_concurrent_activities)

    # -- bookkeeping helpers --------------------------------------------------------------------

    def _next_order(self) -> int:
        self._order += 1
        return self._order

    def _enqueue(self, inst: Instance, item: Event) -> None:
        inst.inbox.append(item)
        if inst.status != "Suspended":
            self._ready[inst.instance_id] = None

    def _schedule_activity(self, inst: Instance, task_id: int, name: str, input_json: str | None) -> None:
        self._activities.append(
            _ActivityWork(self._next_order(), inst.instance_id, inst.execution_id, task_id, name, input_json)
        )

    def _schedule_timer(self, inst: Instance, timer_id: int, fire_at: str) -> None:
        inst.pending_timers.add(timer_id)
        heapq.heappush(
            self._timers,
            _Timer(
                parse_fire_at(fire_at),
                self._next_order(),
                inst.instance_id,
                inst.execution_id,
                timer_id,
                fire_at,
            ),
        )

    @property
    def has_runnable_work(self) -> bool:
        return bool(self._ready or self._activities)

    def next_timer_due(self) -> datetime | None:
        while self._timers:
            timer = self._timers[0]
            inst = self.instances.get(timer.instance_id)
            if inst and inst.execution_id == timer.execution_id and timer.timer_id in inst.pending_timers:
                return timer.due
            heapq.heappop(self._timers)
        return None

    def fire_due_timers(self) -> bool:
        """Deliver TimerFired for every live timer due at or before the virtual now."""
        now = self.clock.now()
        fired = False
        while self._timers and self._timers[0].due <= now:
            timer = heapq.heappop(self._timers)
            inst = self.instances.get(timer.instance_id)
            if (
                not inst
                or inst.execution_id != timer.execution_id
                or timer.timer_id not in inst.pending_timers
            ):
                continue
            inst.pending_timers.discard(timer.timer_id)
            self._enqueue(
                inst, event(EventType.TimerFired, now, TimerId=timer.timer_id, FireAt=timer.fire_at)
            )
            fired = True
        return fired

    # -- starting and loading instances ---------------------------------------------------------

    async def start_instance(
        self, name: str, instance_id: str | None, input_json: str | None, *, parent: ParentLink | None = None
    ) -> str:
        """Create an instance (Pending); an existing non-terminal id raises :class:`InstanceExists`."""
        if name not in self.orchestrators:
            raise UnknownFunction(missing_function(name, "orchestrator"))
        instance_id = instance_id or uuid.uuid4().hex
        validate_instance_id(instance_id)
        existing = self.instances.get(instance_id)
        status = existing.status if existing else None
        if existing is None:
            record = await self.store.read_instance(instance_id)
            status = record.runtime_status if record else None
        if status in RUNNING_STATUSES:
            raise InstanceExists(f"An Orchestration instance with the ID '{instance_id}' already exists.")
        now = self.clock.now()
        execution_id = uuid.uuid4().hex
        inst = Instance(instance_id, name, execution_id, input_json, "Pending", now, now, parent=parent)
        inst.reset_history = status is not None
        started = {
            "Name": name,
            "Version": "",
            "Input": input_json,
            "OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
        }
        if parent:
            started["ParentInstance"] = {"OrchestrationInstance": {"InstanceId": parent.instance_id}}
        self.instances[instance_id] = inst
        self._enqueue(inst, event(EventType.ExecutionStarted, now, **started))
        await self.persist(inst)
        return instance_id

    async def resume_from_store(self) -> int:
        """Load every unfinished instance and rebuild its outstanding work (at-least-once)."""
        loaded: list[Instance] = []
        for record in await self.store.unfinished():
            if record.instance_id in self.instances:
                continue
            inst = Instance.from_record(record, await self.store.load_history(record.instance_id))
            self.instances[inst.instance_id] = inst
            loaded.append(inst)
        for inst in loaded:
            await self._rebuild_work(inst)
        return len(loaded)

    async def _rebuild_work(self, inst: Instance) -> None:
        seen = inst.history + inst.inbox
        done_tasks = {
            e["TaskScheduledId"]
            for e in seen
            if e["EventType"] in (EventType.TaskCompleted, EventType.TaskFailed)
        }
        done_children = {
            e["TaskScheduledId"]
            for e in seen
            if e["EventType"]
            in (EventType.SubOrchestrationInstanceCompleted, EventType.SubOrchestrationInstanceFailed)
        }
        fired = {e["TimerId"] for e in seen if e["EventType"] == EventType.TimerFired}
        if inst.is_terminal:
            return
        for e in inst.history:
            kind = e["EventType"]
            if kind == EventType.TaskScheduled and e["EventId"] not in done_tasks:
                self._schedule_activity(inst, e["EventId"], e["Name"], e.get("Input"))
            elif (
                kind == EventType.TimerCreated
                and e["EventId"] in inst.pending_timers
                and e["EventId"] not in fired
            ):
                self._schedule_timer(inst, e["EventId"], e["FireAt"])
            elif kind == EventType.SubOrchestrationInstanceCreated and e["EventId"] not in done_children:
                await self._reconnect_child(inst, e)
        if inst.inbox and inst.status != "Suspended":
            self._ready[inst.instance_id] = None

    async def _reconnect_child(self, parent: Instance, created: Event) -> None:
        child_id = created["InstanceId"]
        link = ParentLink(parent.instance_id, parent.execution_id, created["EventId"])
        if child_id in self.instances:
            return
        record = await self.store.read_instance(child_id)
        if record is None:
            await self._start_child(_ChildStart(link, child_id, created["Name"], created.get("Input")))
        elif record.runtime_status in TERMINAL_STATUSES:
            self._notify_parent(link, record.runtime_status, record.output, child_id)

    # -- episodes -------------------------------------------------------------------------------

    def _take_batch(self, inst: Instance) -> list[Event]:
        count = 0
        for item in inst.inbox:
            count += 1
            key = _retry_key(item)
            if (
                key is not None
                and key in inst.retries
                and item["EventType"]
                not in (EventType.TaskCompleted, EventType.SubOrchestrationInstanceCompleted)
            ):
                break
        batch = inst.inbox[:count]
        del inst.inbox[:count]
        return batch

    def _context_json(self, inst: Instance, new_events: list[Event]) -> str:
        history = ",".join([*inst.played_json, *(json.dumps(e) for e in new_events)])
        parent = inst.parent.instance_id if inst.parent else None
        return (
            f'{{"history":[{history}],"input":{inst.input or "null"},'
            f'"instanceId":{json.dumps(inst.instance_id)},'
            f'"isReplaying":{json.dumps(bool(inst.history))},"parentInstanceId":{json.dumps(parent)},{_CONTEXT_TAIL}'
        )

    def _invoke_orchestrator(self, inst: Instance, context_json: str) -> dict[str, Any]:
        handle = self.orchestrators[inst.name].user_function
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                state: dict[str, Any] = json.loads(handle(context_json))
            except Exception as exc:
                text = str(exc)
                if OUT_OF_PROC_MARKER in text:
                    state = json.loads(text.split(OUT_OF_PROC_MARKER, 1)[1])
                    state.setdefault("error", text.split(OUT_OF_PROC_MARKER, 1)[0])
                else:
                    state = {"isDone": False, "actions": [], "error": f"{type(exc).__name__}: {text}"}
        for warning in caught:
            log.warning("orchestrator %s (%s): %s", inst.name, inst.instance_id, warning.message)
        return state

    def run_episode(self, inst: Instance) -> _EpisodeOutcome:
        """Replay one episode through the SDK and record its events (synchronous, CPU only)."""
        outcome = _EpisodeOutcome()
        batch = self._take_batch(inst)
        now = self.clock.now()
        new_events = [event(EventType.OrchestratorStarted, now), *batch]
        if inst.name not in self.orchestrators:
            produced = self._complete(
                inst,
                now,
                "Failed",
                missing_function(inst.name, "orchestrator"),
            )
            inst.append_history([*new_events, *produced, event(EventType.OrchestratorCompleted, now)])
            return outcome
        if inst.status == "Pending":
            inst.status = "Running"
        state = self._invoke_orchestrator(inst, self._context_json(inst, new_events))
        if "customStatus" in state:
            inst.custom_status = json.dumps(state["customStatus"])
        for item in batch:
            key = _retry_key(item)
            if item["EventType"] in (EventType.TaskCompleted, EventType.SubOrchestrationInstanceCompleted):
                inst.retries.pop(key, None)  # type: ignore[arg-type]
        produced: list[Event] = []
        flat = _flatten(state.get("actions") or [])
        failure, continue_input = self._dispatch_actions(inst, flat, now, produced, outcome)
        finished = failure is not None or bool(state.get("isDone")) or "error" in state
        if not finished and batch:
            self._continue_retry(inst, batch[-1], now, produced, outcome)
        if failure is not None:
            produced += self._complete(inst, now, "Failed", failure)
        elif "error" in state and not state.get("isDone"):
            message = f"Orchestrator function '{inst.name}' failed: {state['error']}"
            produced += self._complete(inst, now, "Failed", message)
        elif state.get("isDone") and continue_input is not None:
            produced += self._complete(inst, now, "ContinuedAsNew", continue_input)
        elif state.get("isDone"):
            produced += self._complete(inst, now, "Completed", json.dumps(state.get("output")))
        inst.append_history([*new_events, *produced, event(EventType.OrchestratorCompleted, now)])
        inst.last_updated = now
        if inst.status == "ContinuedAsNew":
            self._continue_as_new(inst, continue_input, now)
        return outcome

    def _dispatch_actions(
        self,
        inst: Instance,
        flat: list[Mapping[str, Any]],
        now: datetime,
        produced: list[Event],
        outcome: _EpisodeOutcome,
    ) -> tuple[str | None, str | None]:
        """Turn the new actions into history events; returns (failure message, continue-as-new input)."""
        for index, action in enumerate(flat):
            if action.get("actionType") == ActionType.CREATE_TIMER and action.get("isCanceled"):
                timer_id = inst.timer_ids_by_action.get(index)
                if timer_id is not None:
                    inst.pending_timers.discard(timer_id)
        new_actions = flat[inst.known_actions :]
        first_index = inst.known_actions
        inst.known_actions = len(flat)
        continue_input: str | None = None
        for offset, action in enumerate(new_actions):
            kind = action.get("actionType")
            name = action.get("functionName", "")
            input_json = action.get("input")
            if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
                if name not in self.activities:
                    return (
                        missing_function(name, "activity"),
                        None,
                    )
                task_id = inst.seq()
                produced.append(
                    event(EventType.TaskScheduled, now, task_id, Name=name, Version="", Input=input_json)
                )
                self._schedule_activity(inst, task_id, name, input_json)
                if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
                    self._track_retry(inst, "activity", action, task_id, None)
            elif kind in (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
                if name not in self.orchestrators:
                    return (
                        missing_function(name, "orchestrator"),
                        None,
                    )
                task_id = inst.seq()
                child_id = action.get("instanceId") or f"{inst.execution_id}:{task_id}"
                produced.append(
                    event(
                        EventType.SubOrchestrationInstanceCreated,
                        now,
                        task_id,
                        Name=name,
                        Version="",
                        InstanceId=child_id,
                        Input=input_json,
                    )
                )
                link = ParentLink(inst.instance_id, inst.execution_id, task_id)
                outcome.children.append(_ChildStart(link, child_id, name, input_json))
                if kind == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
                    self._track_retry(inst, "orchestrator", action, task_id, action.get("instanceId"))
            elif kind == ActionType.CREATE_TIMER:
                timer_id = inst.seq()
                fire_at = action["fireAt"]
                produced.append(event(EventType.TimerCreated, now, timer_id, FireAt=fire_at))
                inst.timer_ids_by_action[first_index + offset] = timer_id
                if not action.get("isCanceled"):
                    self._schedule_timer(inst, timer_id, fire_at)
            elif kind == ActionType.CONTINUE_AS_NEW:
                continue_input = input_json if input_json is not None else "null"
            elif kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
                continue
            else:
                return f"Action type {kind} (entities / call_http) is not supported by the local host.", None
        return None, continue_input

    def _track_retry(
        self, inst: Instance, kind: str, action: Mapping[str, Any], task_id: int, child_id: str | None
    ) -> None:
        options = action.get("retryOptions") or {}
        inst.retries[task_id] = RetryState(
            kind=kind,
            name=action["functionName"],
            input=action.get("input"),
            child_instance_id=child_id,
            first_retry_ms=int(options.get("firstRetryIntervalInMilliseconds", 0)),
            max_attempts=int(options.get("maxNumberOfAttempts", 1)),
            attempt=1,
            current_id=task_id,
        )

    def _continue_retry(
        self, inst: Instance, last: Event, now: datetime, produced: list[Event], outcome: _EpisodeOutcome
    ) -> None:
        """DTFx's retry interceptor: a timer after every failed attempt, a new attempt when it fires."""
        key = _retry_key(last)
        retry = inst.retries.pop(key, None) if key is not None else None  # type: ignore[arg-type]
        if retry is None:
            return
        kind = last["EventType"]
        if kind in (EventType.TaskFailed, EventType.SubOrchestrationInstanceFailed):
            timer_id = inst.seq()
            fire_at = timestamp(now + timedelta(milliseconds=retry.first_retry_ms))
            produced.append(event(EventType.TimerCreated, now, timer_id, FireAt=fire_at))
            self._schedule_timer(inst, timer_id, fire_at)
            retry.current_id = timer_id
            inst.retries[timer_id] = retry
        elif kind == EventType.TimerFired and retry.attempt < retry.max_attempts:
            task_id = inst.seq()
            retry.attempt += 1
            retry.current_id = task_id
            inst.retries[task_id] = retry
            if retry.kind == "activity":
                produced.append(
                    event(
                        EventType.TaskScheduled, now, task_id, Name=retry.name, Version="", Input=retry.input
                    )
                )
                self._schedule_activity(inst, task_id, retry.name, retry.input)
            else:
                child_id = retry.child_instance_id or f"{inst.execution_id}:{task_id}"
                produced.append(
                    event(
                        EventType.SubOrchestrationInstanceCreated,
                        now,
                        task_id,
                        Name=retry.name,
                        Version="",
                        InstanceId=child_id,
                        Input=retry.input,
                    )
                )
                link = ParentLink(inst.instance_id, inst.execution_id, task_id)
                outcome.children.append(_ChildStart(link, child_id, retry.name, retry.input))

    def _complete(self, inst: Instance, now: datetime, status: str, result: str) -> list[Event]:
        inst.status = status
        inst.output = result if status != "ContinuedAsNew" else None
        inst.pending_timers.clear()
        inst.retries.clear()
        completed = event(
            EventType.ExecutionCompleted, now, inst.seq(), OrchestrationStatus=status, Result=result
        )
        if status == "Failed":
            completed["FailureDetails"] = {"ErrorType": "OrchestrationFailure", "ErrorMessage": result}
        if status in TERMINAL_STATUSES and inst.parent:
            self._notify_parent(inst.parent, status, inst.output, inst.instance_id)
        return [completed]

    def _continue_as_new(self, inst: Instance, new_input: str | None, now: datetime) -> None:
        """Start a fresh execution under the same id; unprocessed inbox events carry over."""
        inst.execution_id = uuid.uuid4().hex
        inst.input = json.dumps(new_input) if new_input is not None else None
        inst.history, inst.played_json = [], []
        inst.persisted = 0
        inst.reset_history = True
        inst.next_seq = inst.known_actions = 0
        inst.timer_ids_by_action.clear()
        inst.status = "Running"
        started = event(
            EventType.ExecutionStarted,
            now,
            Name=inst.name,
            Version="",
            Input=inst.input,
            OrchestrationInstance={"InstanceId": inst.instance_id, "ExecutionId": inst.execution_id},
        )
        inst.inbox.insert(0, started)
        self._ready[inst.instance_id] = None

    def _notify_parent(self, link: ParentLink, status: str, output: str | None, child_id: str) -> None:
        parent = self.instances.get(link.instance_id)
        if parent is None or parent.execution_id != link.execution_id or parent.is_terminal:
            return
        now = self.clock.now()
        if status == "Completed":
            note = event(
                EventType.SubOrchestrationInstanceCompleted, now, TaskScheduledId=link.task_id, Result=output
            )
        else:
            reason = output or f"Sub-orchestration '{child_id}' ended with status {status}"
            note = event(
                EventType.SubOrchestrationInstanceFailed,
                now,
                TaskScheduledId=link.task_id,
                Reason=reason,
                Details=f"instance {child_id} {status}",
            )
        self._enqueue(parent, note)

    async def _start_child(self, child: _ChildStart) -> None:
        # The action's input is the SDK's JSON text; the extension passes it on as a JSON string.
        input_json = json.dumps(child.input) if child.input is not None else None
        try:
            await self.start_instance(child.name, child.instance_id, input_json, parent=child.parent)
        except (InstanceExists, ValueError) as exc:
            self._notify_parent(child.parent, "Failed", str(exc), child.instance_id)

    # -- rounds ---------------------------------------------------------------------------------

    async def run_round(self) -> bool:
        """Run every ready episode, persist them, then every queued activity; False if nothing ran."""
        progressed = False
        if self._ready:
            progressed = True
            ready, self._ready = list(self._ready), {}
            touched: list[Instance] = []
            children: list[_ChildStart] = []
            for index, instance_id in enumerate(ready):
                inst = self.instances.get(instance_id)
                if inst is None or inst.is_terminal or inst.status == "Suspended" or not inst.inbox:
                    continue
                children.extend(self.run_episode(inst).children)
                touched.append(inst)
                if index % 64 == 63:
                    await asyncio.sleep(0)  # let the management routes in
            await asyncio.gather(*(self.persist(inst) for inst in touched))
            for child in children:
                await self._start_child(child)
            for inst in touched:
                if inst.is_terminal and not inst.inbox:
                    self.instances.pop(inst.instance_id, None)
        if self._activities:
            progressed = True
            work, self._activities = self._activities, []
            try:
                await asyncio.gather(*(self._run_activity(w) for w in work))
            finally:
                self.deliver_finished_activities()
        return progressed

    def deliver_finished_activities(self) -> None:
        """Hand finished activity results to their instances, in scheduling order."""
        finished, self._finished_activities = self._finished_activities, []
        for work, result in sorted(finished, key=lambda pair: pair[0].order):
            inst = self.instances.get(work.instance_id)
            if inst and inst.execution_id == work.execution_id and not inst.is_terminal:
                self._enqueue(inst, result)

    async def _run_activity(self, work: _ActivityWork) -> None:
        inst = self.instances.get(work.instance_id)
        if inst is None or inst.execution_id != work.execution_id or inst.is_terminal:
            return
        function = self.activities.get(work.name)
        async with self._activity_slots:
            try:
                if function is None:
                    raise LookupError(missing_function(work.name, "activity"))
                value = (
                    ActivityTriggerConverter.decode(meta.Datum(work.input, "json"), trigger_metadata=None)
                    if work.input is not None
                    else None
                )
                kwargs = {function.trigger_param: value}
                if function.is_async:
                    output = await function.user_function(**kwargs)
                else:
                    output = await asyncio.to_thread(function.user_function, **kwargs)
                result_json = ActivityTriggerConverter.encode(output, expected_type=None).value
                result = event(
                    EventType.TaskCompleted,
                    self.clock.now(),
                    TaskScheduledId=work.task_id,
                    Result=result_json,
                )
            except Exception as exc:
                log.info("activity %s (%s #%d) failed: %r", work.name, work.instance_id, work.task_id, exc)
                result = event(
                    EventType.TaskFailed,
                    self.clock.now(),
                    TaskScheduledId=work.task_id,
                    Reason=f"Activity function '{work.name}' failed: {type(exc).__name__}: {exc}",
                    Details="".join(traceback.format_exception(exc)),
                )
        self._finished_activities.append((work, result))

    # -- persistence ----------------------------------------------------------------------------

    async def persist(self, inst: Instance) -> None:
        """Write the unwritten history events, then the instance row (serialised per instance)."""
        async with inst.lock:
            if inst.reset_history:
                inst.reset_history = False
                await self.store.delete_history(inst.instance_id)
            first = inst.persisted
            new = inst.history[first:]
            if new:
                await self.store.append_history(inst.instance_id, inst.execution_id, first, new)
                inst.persisted = first + len(new)
            await self.store.write_instance(inst.to_record())

    async def flush(self) -> None:
        """Persist every in-memory instance (used when the host stops)."""
        self.deliver_finished_activities()
        await asyncio.gather(*(self.persist(inst) for inst in list(self.instances.values())))

    # -- management operations ------------------------------------------------------------------

    async def _live_instance(self, instance_id: str) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is not None:
            return inst
        record = await self.store.read_instance(instance_id)
        if record is None:
            raise InstanceNotFound(instance_id)
        if record.runtime_status in TERMINAL_STATUSES:
            raise InstanceGone(instance_id)
        inst = Instance.from_record(record, await self.store.load_history(instance_id))
        self.instances[instance_id] = inst
        await self._rebuild_work(inst)
        return inst

    async def status(self, instance_id: str, *, with_history: bool = False) -> InstanceStatus | None:
        inst = self.instances.get(instance_id)
        if inst is not None:
            source: Instance | InstanceRecord = inst
            history = list(inst.history) if with_history else None
        else:
            record = await self.store.read_instance(instance_id)
            if record is None:
                return None
            source = record
            history = await self.store.load_history(instance_id) if with_history else None
        return self._status_of(source, history)

    @staticmethod
    def _status_of(source: Instance | InstanceRecord, history: list[Event] | None) -> InstanceStatus:
        if isinstance(source, Instance):
            return InstanceStatus(
                source.instance_id,
                source.name,
                source.status,
                source.input,
                source.output,
                source.custom_status,
                source.created,
                source.last_updated,
                played_view(history) if history is not None else None,
            )
        return InstanceStatus(
            source.instance_id,
            source.name,
            source.runtime_status,
            source.input,
            source.output,
            source.custom_status,
            source.created_time,
            source.last_updated_time,
            played_view(history) if history is not None else None,
        )

    async def query(
        self, query: InstanceQuery, *, page_size: int, continuation: str | None
    ) -> tuple[list[InstanceStatus], str | None]:
        records, token = await self.store.query_instances(
            query, page_size=page_size, continuation=continuation
        )
        statuses = []
        for record in records:
            live = self.instances.get(record.instance_id)
            statuses.append(self._status_of(live if live is not None else record, None))
        return statuses, token

    async def raise_event(self, instance_id: str, name: str, data_json: str | None) -> None:
        inst = await self._live_instance(instance_id)
        if inst.is_terminal:
            raise InstanceGone(instance_id)
        self._enqueue(inst, event(EventType.EventRaised, self.clock.now(), Name=name, Input=data_json))
        await self.persist(inst)

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        inst = await self._live_instance(instance_id)
        if inst.is_terminal:
            raise InstanceGone(instance_id)
        now = self.clock.now()
        result = json.dumps(reason)
        inst.inbox.clear()
        inst.status = "Terminated"
        inst.output = result
        inst.pending_timers.clear()
        inst.retries.clear()
        inst.last_updated = now
        inst.append_history(
            [
                event(EventType.OrchestratorStarted, now),
                event(EventType.ExecutionTerminated, now, Input=result),
                event(EventType.ExecutionCompleted, now, OrchestrationStatus="Terminated", Result=result),
                event(EventType.OrchestratorCompleted, now),
            ]
        )
        await self.persist(inst)
        self.instances.pop(instance_id, None)

    async def set_suspended(self, instance_id: str, suspended: bool, reason: str | None) -> None:
        inst = await self._live_instance(instance_id)
        if inst.is_terminal:
            raise InstanceGone(instance_id)
        if (inst.status == "Suspended") == suspended:
            return
        now = self.clock.now()
        kind = EventType.ExecutionSuspended if suspended else EventType.ExecutionResumed
        inst.append_history(
            [
                event(EventType.OrchestratorStarted, now),
                event(kind, now, Reason=reason),
                event(EventType.OrchestratorCompleted, now),
            ]
        )
        inst.status = "Suspended" if suspended else "Running"
        inst.last_updated = now
        if not suspended and inst.inbox:
            self._ready[instance_id] = None
        await self.persist(inst)

    async def restart(self, instance_id: str, *, new_instance_id: bool) -> str:
        status = await self.status(instance_id)
        if status is None:
            raise InstanceNotFound(instance_id)
        return await self.start_instance(status.name, None if new_instance_id else instance_id, status.input)

    async def purge(self, instance_id: str) -> int:
        status = await self.status(instance_id)
        if status is None:
            raise InstanceNotFound(instance_id)
        if status.runtime_status not in TERMINAL_STATUSES:
            raise InstanceNotTerminal(
                "Only orchestrations in a terminal state can be purged, but the orchestration with "
                f"instance ID {instance_id} has status {status.runtime_status}"
            )
        self.instances.pop(instance_id, None)
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
            self.instances.pop(record.instance_id, None)
            deleted += int(await self.store.delete_instance(record.instance_id))
        return deleted
