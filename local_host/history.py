"""The history model: DTFx-shaped history events as the Durable extension hands them to the Python
SDK, the actions the SDK answers with, and the ``historyEvents`` shape of the status API."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from enum import IntEnum
from typing import Any

from dateutil.parser import parse as dateutil_parse

Event = dict[str, Any]

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the SDK's own DATETIME_STRING_FORMAT


class EventType(IntEnum):
    """DTFx ``EventType`` values (the SDK's ``HistoryEventType``)."""

    ExecutionStarted = 0
    ExecutionCompleted = 1
    ExecutionFailed = 2
    ExecutionTerminated = 3
    TaskScheduled = 4
    TaskCompleted = 5
    TaskFailed = 6
    SubOrchestrationInstanceCreated = 7
    SubOrchestrationInstanceCompleted = 8
    SubOrchestrationInstanceFailed = 9
    TimerCreated = 10
    TimerFired = 11
    OrchestratorStarted = 12
    OrchestratorCompleted = 13
    EventSent = 14
    EventRaised = 15
    ContinueAsNew = 16
    GenericEvent = 17
    HistoryState = 18
    ExecutionSuspended = 19
    ExecutionResumed = 20


class ActionType(IntEnum):
    """The SDK's ``ActionType`` values (the extension's ``AsyncActionType``)."""

    CallActivity = 0
    CallActivityWithRetry = 1
    CallSubOrchestrator = 2
    CallSubOrchestratorWithRetry = 3
    ContinueAsNew = 4
    CreateTimer = 5
    WaitForExternalEvent = 6
    CallEntity = 7
    CallHttp = 8
    SignalEntity = 9
    ScheduledSignalEntity = 10
    WhenAny = 11
    WhenAll = 12


COMPLETION_EVENTS = frozenset(
    {
        EventType.TaskCompleted,
        EventType.TaskFailed,
        EventType.SubOrchestrationInstanceCompleted,
        EventType.SubOrchestrationInstanceFailed,
    }
)
SUCCESS_EVENTS = frozenset({EventType.TaskCompleted, EventType.SubOrchestrationInstanceCompleted})


def _leaves(action: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if action.get("actionType") in (ActionType.WhenAll, ActionType.WhenAny):
        for child in action.get("compoundActions") or ():
            yield from _leaves(child)
    else:
        yield action


def flatten_actions(actions: Sequence[Sequence[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    """The V2/V3 action list without its WhenAll/WhenAny wrappers, in scheduling order."""
    return [leaf for group in actions for action in group for leaf in _leaves(action)]


def resolved_id(e: Event) -> int | None:
    """The sequence number of the task or timer an event completes (None for other events)."""
    kind = e["EventType"]
    if kind in COMPLETION_EVENTS:
        return int(e["TaskScheduledId"])
    if kind == EventType.TimerFired:
        return int(e["TimerId"])
    return None


@functools.lru_cache(maxsize=4096)
def timestamp(moment: datetime) -> str:
    """DTFx's timestamp text, memoised: on a virtual clock most events share a few moments."""
    return moment.strftime(TIMESTAMP_FORMAT)


@functools.lru_cache(maxsize=1 << 16)
def parse_timestamp(text: str) -> datetime:
    """dateutil parse, memoised: the same few timestamps are parsed on every replay of a history."""
    return dateutil_parse(text)


def install_timestamp_cache() -> None:
    """Give the SDK's ``HistoryEvent`` the memoised parser.

    The SDK parses every event's ``Timestamp`` with dateutil on every replay (~85 % of replay cost).
    The memoised function returns the very object dateutil returns for that string (datetimes are
    immutable), so replay results are unchanged; only repeated parsing is skipped.
    """
    import importlib

    module = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")
    module.dt_parse = parse_timestamp  # type: ignore[attr-defined]


def event(event_type: EventType, moment: datetime, event_id: int = -1, **fields: Any) -> Event:
    return {
        "EventType": int(event_type),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": timestamp(moment),
        **fields,
    }


def played_view(history: list[Event]) -> list[Event]:
    """History with ``IsPlayed`` as the SDK would see it on the next replay: true for every event of a
    finished episode, false for the events of the latest episode (from its OrchestratorStarted on)."""
    last_start = max(
        (i for i, e in enumerate(history) if e["EventType"] == EventType.OrchestratorStarted),
        default=len(history),
    )
    return [{**e, "IsPlayed": i < last_start} for i, e in enumerate(history)]


def _json_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def to_status_history(history: list[Event], *, show_output: bool) -> list[dict[str, Any]]:
    """Convert DTFx events to the extension's ``historyEvents`` payload: EventType names, no
    EventId/IsPlayed, no OrchestratorStarted/Completed, and each TaskScheduled / sub-orchestration
    creation folded into its completion (``FunctionName`` + ``ScheduledTime``)."""
    scheduled: dict[tuple[str, int], Event] = {}
    result: list[dict[str, Any]] = []
    for e in history:
        kind = EventType(e["EventType"])
        if kind in (EventType.OrchestratorStarted, EventType.OrchestratorCompleted):
            continue
        if kind in (EventType.TaskScheduled, EventType.SubOrchestrationInstanceCreated):
            scheduled[(kind.name, e["EventId"])] = e
            continue
        item: dict[str, Any] = {"EventType": kind.name, "Timestamp": e["Timestamp"]}
        if kind == EventType.ExecutionStarted:
            item["FunctionName"] = e.get("Name")
        elif kind in (EventType.TaskCompleted, EventType.TaskFailed):
            origin = scheduled.get(("TaskScheduled", e["TaskScheduledId"]), {})
            item["FunctionName"] = origin.get("Name")
            item["ScheduledTime"] = origin.get("Timestamp")
        elif kind in (EventType.SubOrchestrationInstanceCompleted, EventType.SubOrchestrationInstanceFailed):
            origin = scheduled.get(("SubOrchestrationInstanceCreated", e["TaskScheduledId"]), {})
            item["FunctionName"] = origin.get("Name")
            item["ScheduledTime"] = origin.get("Timestamp")
            item["InstanceId"] = origin.get("InstanceId")
        elif kind == EventType.ExecutionCompleted:
            item["OrchestrationStatus"] = e.get("OrchestrationStatus")
        for key in ("FireAt", "TimerId", "Name", "Reason", "Details", "FailureDetails"):
            if key == "Name" and kind != EventType.EventRaised:
                continue  # the extension reports it as FunctionName
            if key in e and key not in item:
                item[key] = e[key]
        if kind == EventType.EventRaised:
            item["Input"] = _json_or_text(e.get("Input")) if show_output else None
        if "Result" in e and show_output:
            item["Result"] = _json_or_text(e["Result"])
        result.append(item)
    return result
