"""An orchestration's history as a timeline a person can read: each activity attempt with its
outcome and error category, each retry timer (when it was set, for when, and when it fired),
sub-orchestrations, and how the instance ended. Built from the management API's ``historyEvents``,
so it reads a deployed app's history and a local run's alike."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from shared.redact import redact_text, strip_query

_URL = re.compile(r"\bhttps?://[^\s'\"<>]+")


def brief(text: str) -> str:
    """An error message for a table: secrets masked, URLs without their query, at most 200 chars."""
    return _URL.sub(lambda m: strip_query(m.group(0)), redact_text(text))[:200]


@dataclass(frozen=True, slots=True)
class Step:
    at: str  # when it happened (the orchestration's clock)
    kind: str  # started, activity, retry timer, timer fired, sub-orchestration, ended, ...
    name: str | None = None
    attempt: int | None = None
    outcome: str | None = None  # ok, failed, raised, completed, Failed, ...
    category: str | None = None  # the error category of a failed attempt
    detail: str | None = None
    fire_at: str | None = None  # timers: when they are due
    wait_seconds: float | None = None  # retry timers: how long after they were set
    instance_id: str | None = None  # sub-orchestrations

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _value(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _envelope(result: Any) -> tuple[str, str | None, str | None]:
    """(outcome, category, detail) of an activity result; ours are ``{"ok": ..., "failure": ...}``."""
    value = _value(result)
    if isinstance(value, dict) and "ok" in value:
        if value["ok"]:
            return "ok", None, None
        failure = value.get("failure") or {}
        return "failed", failure.get("category"), brief(str(failure.get("message", "")))
    return "ok", None, None


def timeline(events: list[dict[str, Any]]) -> list[Step]:
    attempts: Counter[str] = Counter()
    steps: list[Step] = []
    for event in events:
        kind = event.get("EventType")
        at = str(event.get("Timestamp", ""))
        name = event.get("FunctionName")
        if kind == "ExecutionStarted":
            steps.append(Step(at, "started", name))
        elif kind in ("TaskCompleted", "TaskFailed"):
            attempts[name] += 1
            if kind == "TaskCompleted":
                outcome, category, detail = _envelope(event.get("Result"))
            else:
                outcome, category = "raised", "unknown"
                detail = brief(str(event.get("Reason", "")))
            steps.append(Step(at, "activity", name, attempts[name], outcome, category, detail))
        elif kind == "TimerCreated":
            fire_at = str(event.get("FireAt", ""))
            wait = (_parse(fire_at) - _parse(at)).total_seconds() if fire_at and at else None
            steps.append(Step(at, "retry timer", fire_at=fire_at, wait_seconds=wait))
        elif kind == "TimerFired":
            steps.append(Step(at, "timer fired", fire_at=str(event.get("FireAt", ""))))
        elif kind in ("SubOrchestrationInstanceCompleted", "SubOrchestrationInstanceFailed"):
            completed = kind == "SubOrchestrationInstanceCompleted"
            detail = None
            if completed:
                value = _value(event.get("Result"))
                if isinstance(value, dict) and "status" in value:
                    detail = str(value["status"])
            else:
                detail = brief(str(event.get("Reason", "")))
            steps.append(
                Step(
                    at,
                    "sub-orchestration",
                    name,
                    outcome="completed" if completed else "failed",
                    detail=detail,
                    instance_id=event.get("InstanceId"),
                )
            )
        elif kind == "ExecutionCompleted":
            steps.append(Step(at, "ended", outcome=event.get("OrchestrationStatus")))
        elif kind == "ExecutionTerminated":
            steps.append(Step(at, "terminated", detail=brief(str(event.get("Input", "")))))
        elif kind:
            steps.append(Step(at, str(kind), name))
    return steps
