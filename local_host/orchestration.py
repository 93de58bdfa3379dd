"""The orchestration model: one instance's state, and one episode of it, without any I/O.

An episode calls the orchestrator's real SDK handle with the instance's history (context JSON in,
state JSON out, or the ``$OutOfProcData$`` exception on failure) and turns the actions it answers
with into DTFx history events, numbered as the SDK numbers its tasks. This is the part of the
Durable extension + DTFx that the Python SDK talks to; the scheduler runs episodes and persists
them, the store writes each one atomically.

Sequence numbers: the SDK numbers tasks in the order it creates them; the flattened V3 action list
holds those tasks in that same order, except for the placeholders the SDK creates for the retry
timers and re-attempts of ``*_with_retry`` calls. Those are numbered while the SDK processes the
TaskFailed / TimerFired of the retried task, so an episode's batch ends at such an event: its
placeholder id then always comes after the ids of the episode's new actions.

Replay is checked as DTFx checks it: the n-th task-creating action of every replay must have the
kind and name recorded for it; otherwise the instance fails with a non-determinism error.
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .history import (
    COMPLETION_EVENTS,
    SUCCESS_EVENTS,
    ActionType,
    Event,
    EventType,
    event,
    flatten_actions,
    resolved_id,
    timestamp,
)

log = logging.getLogger("local_host.orchestration")

OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"
RUNNING_STATUSES = frozenset({"Pending", "Running", "Suspended", "ContinuedAsNew"})
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
_INVALID_ID_CHARS = frozenset("/\\#?")
# Events are stored unplayed; IsPlayed is their third key, so the first match is the flag.
_UNPLAYED, _PLAYED = '"IsPlayed": false', '"IsPlayed": true'
# What the extension sends for the Azure Storage provider (V3 lets the SDK split long timers).
_CONTEXT_TAIL = (
    '"upperSchemaVersion":1,"upperSchemaVersionNew":2,'
    '"maximumShortTimerDuration":"6.00:00:00","longRunningTimerIntervalDuration":"3.00:00:00"}'
)
OrchestratorHandle = Callable[[str], str]

ACTIVITY, ORCHESTRATOR, TIMER = "activity", "orchestrator", "timer"
_TASK_KINDS: dict[int, str] = {
    ActionType.CallActivity: ACTIVITY,
    ActionType.CallActivityWithRetry: ACTIVITY,
    ActionType.CallSubOrchestrator: ORCHESTRATOR,
    ActionType.CallSubOrchestratorWithRetry: ORCHESTRATOR,
    ActionType.CreateTimer: TIMER,
}
# How DTFx names the task kinds and the actions that create them in its non-determinism errors.
_DTFX_TASK = {ACTIVITY: "an activity task", ORCHESTRATOR: "a sub-orchestration task", TIMER: "a timer task"}
_DTFX_ACTION = {
    ACTIVITY: "ScheduleTaskOrchestratorAction",
    ORCHESTRATOR: "CreateSubOrchestrationAction",
    TIMER: "CreateTimerOrchestratorAction",
}
NON_DETERMINISM_ERROR = "NonDeterministicOrchestrationException"


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


def non_determinism(recorded: ScheduledTask, replayed_kind: str | None, replayed_name: str | None) -> str:
    """DTFx's message when a replay does not schedule what the history says it scheduled."""
    task = _DTFX_TASK[recorded.kind]
    named = f" and name '{recorded.name}'" if recorded.kind != TIMER else ""
    before = (
        f"A previous execution of this orchestration scheduled {task} "
        f"with sequence ID {recorded.task_id}{named}"
    )
    if replayed_kind is None:
        now = "but the current replay execution hasn't (yet?) scheduled this task."
    elif replayed_kind != recorded.kind:
        now = (
            f"but the current orchestration replay instead produced a {_DTFX_ACTION[replayed_kind]} "
            "action at this sequence number."
        )
    else:
        now = (
            f"but the current orchestration replay instead scheduled {task} named '{replayed_name}' "
            "at this sequence number."
        )
    return (
        f"Non-Deterministic workflow detected: {before}, {now} Was a change made to the orchestrator "
        "code after this instance had already started running?"
    )


@dataclass(frozen=True)
class ParentLink:
    instance_id: str
    execution_id: str
    task_id: int


@dataclass(frozen=True)
class ScheduledTask:
    """A task-creating action of the orchestrator as the history recorded it (the replay check)."""

    kind: str
    name: str
    task_id: int


@dataclass
class RetryState:
    """Host-side retry bookkeeping of one ``*_with_retry`` call (DTFx's retry interceptor)."""

    kind: str  # ACTIVITY or ORCHESTRATOR
    name: str
    input: str | None
    child_instance_id: str | None
    first_retry_ms: int
    max_attempts: int
    attempt: int
    current_id: int


@dataclass
class ReplayState:
    """What the host derives from replays: the next sequence number, the tasks scheduled so far,
    the open retries and the live timers. An episode works on a copy and keeps it only if the
    episode is recorded."""

    next_seq: int = 0
    tasks: list[ScheduledTask] = field(default_factory=list)
    retries: dict[int, RetryState] = field(default_factory=dict)
    pending_timers: set[int] = field(default_factory=set)

    def seq(self) -> int:
        value = self.next_seq
        self.next_seq += 1
        return value

    def copy(self) -> ReplayState:
        return ReplayState(
            self.next_seq,
            list(self.tasks),
            {k: replace(v) for k, v in self.retries.items()},
            set(self.pending_timers),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nextSeq": self.next_seq,
            "tasks": [[t.kind, t.name, t.task_id] for t in self.tasks],
            "retries": [asdict(r) for r in self.retries.values()],
            "pendingTimers": sorted(self.pending_timers),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayState:
        return cls(
            next_seq=int(data.get("nextSeq", 0)),
            tasks=[ScheduledTask(str(k), str(n), int(i)) for k, n, i in data.get("tasks", [])],
            retries={int(r["current_id"]): RetryState(**r) for r in data.get("retries", [])},
            pending_timers={int(t) for t in data.get("pendingTimers", [])},
        )


@dataclass(frozen=True)
class ActivityCall:
    task_id: int
    name: str
    input: str | None


@dataclass(frozen=True)
class TimerCall:
    timer_id: int
    fire_at: str


@dataclass(frozen=True)
class ChildStart:
    parent: ParentLink
    instance_id: str
    name: str
    input: str | None


@dataclass
class Episode:
    """One recorded episode: its history events and the work it leaves for the scheduler."""

    execution_id: str
    events: list[Event] = field(default_factory=list)
    activities: list[ActivityCall] = field(default_factory=list)
    timers: list[TimerCall] = field(default_factory=list)
    children: list[ChildStart] = field(default_factory=list)


@dataclass
class Instance:
    """In-memory state of one orchestration instance; its stored row holds the same."""

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
    replay: ReplayState = field(default_factory=ReplayState)
    version: int = 0  # writes of the instance row so far
    waiting: bool = False  # the last episode made no progress: wait for a new message
    stored_json: list[str] = field(default_factory=list, repr=False)  # each event as stored
    played_json: list[str] = field(default_factory=list, repr=False)  # ... and as replayed
    resolved: set[int] = field(default_factory=set, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def runnable(self) -> bool:
        return bool(self.inbox) and not self.is_terminal and self.status != "Suspended" and not self.waiting

    def append_history(self, events: list[Event], texts: list[str] | None = None) -> None:
        """Add events (``texts``: their JSON when already made); each is serialised once."""
        self.history.extend(events)
        for text in texts if texts is not None else (json.dumps(e) for e in events):
            self.stored_json.append(text)
            self.played_json.append(text.replace(_UNPLAYED, _PLAYED, 1))
        self.resolved.update(i for e in events if (i := resolved_id(e)) is not None)

    def history_json(self) -> str:
        return "[" + ",".join(self.stored_json) + "]"

    def accepts(self, item: Event) -> bool:
        """False for a completion this instance already has (a duplicate message, as DTFx drops)."""
        key = resolved_id(item)
        return key is None or key not in self.resolved

    def enqueue(self, item: Event) -> bool:
        if not self.accepts(item):
            log.warning("%s: duplicate %s dropped", self.instance_id, EventType(item["EventType"]).name)
            return False
        self.inbox.append(item)
        key = resolved_id(item)
        if key is not None:
            self.resolved.add(key)
        self.waiting = False
        return True

    def engine_state(self) -> dict[str, Any]:
        return {
            "replay": self.replay.to_json(),
            "inbox": self.inbox,
            "parent": asdict(self.parent) if self.parent else None,
        }

    @classmethod
    def started(
        cls,
        name: str,
        instance_id: str,
        input_json: str | None,
        now: datetime,
        parent: ParentLink | None,
        version: int,
    ) -> Instance:
        """A new Pending instance whose first message is its ExecutionStarted."""
        inst = cls(instance_id, name, uuid.uuid4().hex, input_json, "Pending", now, now, parent=parent)
        inst.version = version
        inst.enqueue(inst.execution_started(now))
        return inst

    def execution_started(self, now: datetime) -> Event:
        fields: dict[str, Any] = {
            "Name": self.name,
            "Version": "",
            "Input": self.input,
            "OrchestrationInstance": {"InstanceId": self.instance_id, "ExecutionId": self.execution_id},
        }
        if self.parent:
            fields["ParentInstance"] = {"OrchestrationInstance": {"InstanceId": self.parent.instance_id}}
        return event(EventType.ExecutionStarted, now, **fields)

    def complete(self, now: datetime, status: str, result: str, error_type: str | None = None) -> Event:
        """Enter a final status; the ExecutionCompleted event that records it."""
        self.status = status
        self.output = result if status != "ContinuedAsNew" else None
        self.replay.pending_timers.clear()
        self.replay.retries.clear()
        completed = event(
            EventType.ExecutionCompleted, now, self.replay.seq(), OrchestrationStatus=status, Result=result
        )
        if status == "Failed":
            completed["FailureDetails"] = {
                "ErrorType": error_type or "OrchestrationFailure",
                "ErrorMessage": result,
            }
        return completed

    def continue_as_new(self, new_input: str | None, now: datetime) -> None:
        """Start a fresh execution under the same id; raised events not yet handled carry over (as
        in DTFx), results for the old execution's tasks do not."""
        self.execution_id = uuid.uuid4().hex
        self.input = json.dumps(new_input) if new_input is not None else None
        self.history, self.stored_json, self.played_json = [], [], []
        self.replay = ReplayState()
        self.resolved = set()
        self.status = "Running"
        carried = [e for e in self.inbox if e["EventType"] == EventType.EventRaised]
        self.inbox = [self.execution_started(now), *carried]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Instance:
        """Rebuild an instance from its stored row (see :mod:`local_host.persistence`)."""
        state: Mapping[str, Any] = row["State"]
        parent = state.get("parent")
        inst = cls(
            instance_id=row["RowKey"],
            name=row["Name"],
            execution_id=row["ExecutionId"],
            input=row.get("Input"),
            status=row["RuntimeStatus"],
            created=row["CreatedTime"],
            last_updated=row["LastUpdatedTime"],
            parent=ParentLink(**parent) if parent else None,
            output=row.get("Output"),
            custom_status=row.get("CustomStatus"),
            replay=ReplayState.from_json(state.get("replay", {})),
            version=int(row.get("Version", 0)),
        )
        inst.append_history(json.loads(row["History"]) if row.get("History") else [])
        for item in state.get("inbox", []):
            inst.enqueue(item)
        return inst


def _take(inst: Instance) -> tuple[int, bool]:
    """How many inbox messages one episode takes: all of them, or up to and including the first
    failure or timer of a ``*_with_retry`` call (True then: its retry placeholder must be numbered
    after the ids of the episode's new actions, so that message ends the batch)."""
    for count, item in enumerate(inst.inbox, start=1):
        key = resolved_id(item)
        if key is not None and key in inst.replay.retries and item["EventType"] not in SUCCESS_EVENTS:
            return count, True
    return len(inst.inbox), False


def _in_scheduling_order(batch: list[Event], cut: bool) -> list[Event]:
    """The batch with its completions sorted by sequence number (other messages keep their place),
    so results that raced each other are recorded in one order; a retry cut stays last."""
    body = batch[:-1] if cut else batch
    slots = [i for i, e in enumerate(body) if resolved_id(e) is not None]
    ordered = sorted((body[i] for i in slots), key=lambda e: resolved_id(e) or 0)
    result = list(body)
    for slot, item in zip(slots, ordered, strict=True):
        result[slot] = item
    return result + batch[len(body) :]


class EpisodeRunner:
    """Runs episodes of the app's orchestrators (DTFx's orchestration executor + the extension's
    out-of-process shim)."""

    def __init__(self, orchestrators: Mapping[str, OrchestratorHandle], activities: Collection[str]) -> None:
        self.orchestrators = orchestrators
        self.activities = activities

    def context_json(self, inst: Instance, new_texts: list[str]) -> str:
        history = ",".join([*inst.played_json, *new_texts])
        parent = inst.parent.instance_id if inst.parent else None
        return (
            f'{{"history":[{history}],"input":{inst.input or "null"},'
            f'"instanceId":{json.dumps(inst.instance_id)},'
            f'"isReplaying":{json.dumps(bool(inst.history))},"parentInstanceId":{json.dumps(parent)},{_CONTEXT_TAIL}'
        )

    def _invoke(self, inst: Instance, handle: OrchestratorHandle, context_json: str) -> dict[str, Any]:
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
            if issubclass(warning.category, DeprecationWarning):  # ignored by default, as in the worker
                continue
            log.warning("orchestrator %s (%s): %s", inst.name, inst.instance_id, warning.message)
        return state

    def run(self, inst: Instance, now: datetime) -> Episode | None:
        """Replay one episode over the messages in the inbox (CPU only). Returns the recorded
        episode, or None when the orchestrator made no progress (it awaits messages still to
        come): then nothing changes and the messages stay in the inbox for the next episode."""
        count, cut = _take(inst)
        batch = _in_scheduling_order(inst.inbox[:count], cut)
        new_events = [event(EventType.OrchestratorStarted, now), *batch]
        new_texts = [json.dumps(e) for e in new_events]
        replay = inst.replay.copy()
        episode = Episode(inst.execution_id)
        cancelled: list[int] = []
        produced: list[Event] = []
        custom_status = inst.custom_status
        ending: tuple[str, str, str | None] | None = None  # status, result, error type
        continue_input: str | None = None
        handle = self.orchestrators.get(inst.name)
        if handle is None:
            ending = ("Failed", missing_function(inst.name, "orchestrator"), None)
        else:
            state = self._invoke(inst, handle, self.context_json(inst, new_texts))
            if "customStatus" in state:
                custom_status = json.dumps(state["customStatus"])
            for item in batch:
                if item["EventType"] in SUCCESS_EVENTS:
                    replay.retries.pop(int(item["TaskScheduledId"]), None)
            flat = flatten_actions(state.get("actions") or [])
            failure, continue_input = self._dispatch(inst, replay, flat, now, produced, episode, cancelled)
            done = bool(state.get("isDone"))
            if failure is not None:
                ending = failure
            elif "error" in state and not done:
                ending = ("Failed", f"Orchestrator function '{inst.name}' failed: {state['error']}", None)
            elif done and continue_input is not None:
                ending = ("ContinuedAsNew", continue_input, None)
            elif done:
                ending = ("Completed", json.dumps(state.get("output")), None)
            elif batch:
                self._continue_retry(inst, replay, batch[-1], now, produced, episode)
        progressed = (
            bool(produced)
            or ending is not None
            or custom_status != inst.custom_status
            or bool(cancelled)
            or any(e["EventType"] == EventType.ExecutionStarted for e in batch)
        )
        if not progressed:
            return None
        replay.pending_timers.difference_update(
            int(e["TimerId"]) for e in batch if e["EventType"] == EventType.TimerFired
        )
        del inst.inbox[:count]
        inst.replay = replay
        inst.custom_status = custom_status
        if inst.status == "Pending":
            inst.status = "Running"
        if ending is not None:
            produced.append(inst.complete(now, *ending))
            episode.activities, episode.timers, episode.children = [], [], []
        ending_events = [*produced, event(EventType.OrchestratorCompleted, now)]
        episode.events = [*new_events, *ending_events]
        inst.append_history(episode.events, [*new_texts, *(json.dumps(e) for e in ending_events)])
        inst.last_updated = now
        if inst.status == "ContinuedAsNew":
            inst.continue_as_new(continue_input, now)
        return episode

    def _dispatch(
        self,
        inst: Instance,
        replay: ReplayState,
        flat: list[Mapping[str, Any]],
        now: datetime,
        produced: list[Event],
        episode: Episode,
        cancelled: list[int],
    ) -> tuple[tuple[str, str, str | None] | None, str | None]:
        """Check the replayed actions against the recorded tasks and turn the new ones into
        history events. Returns (ending on failure, continue-as-new input)."""
        position = 0
        continue_input: str | None = None
        for action in flat:
            action_type = action.get("actionType")
            if action_type == ActionType.ContinueAsNew:
                input_json = action.get("input")
                continue_input = input_json if input_json is not None else "null"
                continue
            if action_type == ActionType.WaitForExternalEvent:
                continue
            kind = _TASK_KINDS.get(-1 if action_type is None else int(action_type))
            if kind is None:
                message = (
                    f"Action type {action_type} (entities / call_http) is not supported by the local host."
                )
                return ("Failed", message, None), None
            name = str(action.get("functionName") or "")
            if position < len(replay.tasks):
                recorded = replay.tasks[position]
                if recorded.kind != kind or recorded.name.lower() != name.lower():
                    return ("Failed", non_determinism(recorded, kind, name), NON_DETERMINISM_ERROR), None
                if kind == TIMER and action.get("isCanceled") and recorded.task_id in replay.pending_timers:
                    replay.pending_timers.discard(recorded.task_id)
                    cancelled.append(recorded.task_id)
            else:
                failure = self._schedule(inst, replay, action, kind, name, now, produced, episode)
                if failure is not None:
                    return ("Failed", failure, None), None
            position += 1
        if position < len(replay.tasks):
            return (
                "Failed",
                non_determinism(replay.tasks[position], None, None),
                NON_DETERMINISM_ERROR,
            ), None
        return None, continue_input

    def _schedule(
        self,
        inst: Instance,
        replay: ReplayState,
        action: Mapping[str, Any],
        kind: str,
        name: str,
        now: datetime,
        produced: list[Event],
        episode: Episode,
    ) -> str | None:
        """Record one new action; returns a failure message for a call to a missing function."""
        input_json = action.get("input")
        action_type = action.get("actionType")
        if kind == ACTIVITY:
            if name not in self.activities:
                return missing_function(name, "activity")
            task_id = replay.seq()
            produced.append(
                event(EventType.TaskScheduled, now, task_id, Name=name, Version="", Input=input_json)
            )
            episode.activities.append(ActivityCall(task_id, name, input_json))
            if action_type == ActionType.CallActivityWithRetry:
                self._track_retry(replay, ACTIVITY, action, task_id, None)
        elif kind == ORCHESTRATOR:
            if name not in self.orchestrators:
                return missing_function(name, "orchestrator")
            task_id = replay.seq()
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
            episode.children.append(ChildStart(link, child_id, name, input_json))
            if action_type == ActionType.CallSubOrchestratorWithRetry:
                self._track_retry(replay, ORCHESTRATOR, action, task_id, action.get("instanceId"))
        else:
            task_id = replay.seq()
            fire_at = str(action["fireAt"])
            produced.append(event(EventType.TimerCreated, now, task_id, FireAt=fire_at))
            if not action.get("isCanceled"):
                replay.pending_timers.add(task_id)
                episode.timers.append(TimerCall(task_id, fire_at))
        replay.tasks.append(ScheduledTask(kind, name, task_id))
        return None

    @staticmethod
    def _track_retry(
        replay: ReplayState, kind: str, action: Mapping[str, Any], task_id: int, child_id: str | None
    ) -> None:
        options = action.get("retryOptions") or {}
        replay.retries[task_id] = RetryState(
            kind=kind,
            name=action["functionName"],
            input=action.get("input"),
            child_instance_id=child_id,
            first_retry_ms=int(options.get("firstRetryIntervalInMilliseconds", 0)),
            max_attempts=int(options.get("maxNumberOfAttempts", 1)),
            attempt=1,
            current_id=task_id,
        )

    @staticmethod
    def _continue_retry(
        inst: Instance,
        replay: ReplayState,
        last: Event,
        now: datetime,
        produced: list[Event],
        episode: Episode,
    ) -> None:
        """DTFx's retry interceptor: a timer after every failed attempt, a new attempt when it fires."""
        key = resolved_id(last)
        retry = replay.retries.pop(key, None) if key is not None else None
        if retry is None:
            return
        kind = last["EventType"]
        if kind in COMPLETION_EVENTS:  # a failed attempt (successes were popped before)
            timer_id = replay.seq()
            fire_at = timestamp(now + timedelta(milliseconds=retry.first_retry_ms))
            produced.append(event(EventType.TimerCreated, now, timer_id, FireAt=fire_at))
            replay.pending_timers.add(timer_id)
            episode.timers.append(TimerCall(timer_id, fire_at))
            retry.current_id = timer_id
            replay.retries[timer_id] = retry
        elif kind == EventType.TimerFired and retry.attempt < retry.max_attempts:
            task_id = replay.seq()
            retry.attempt += 1
            retry.current_id = task_id
            replay.retries[task_id] = retry
            if retry.kind == ACTIVITY:
                produced.append(
                    event(
                        EventType.TaskScheduled, now, task_id, Name=retry.name, Version="", Input=retry.input
                    )
                )
                episode.activities.append(ActivityCall(task_id, retry.name, retry.input))
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
                episode.children.append(ChildStart(link, child_id, retry.name, retry.input))
