"""What every domain's dead-letter replay shares: the request, what it started, the replay's
instance id and the marker its orchestration carries (docs/architecture.md, section 13)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.durable import OrchestrationStarter
from shared.state.deadletter import DeadLetter

_REPLAY_SUFFIX = re.compile(r":replay\d+$")


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    letter: DeadLetter
    generation: int  # 1 for the first replay of this record
    retry_delays: Sequence[int]
    now: datetime


@dataclass(frozen=True, slots=True)
class ReplayStart:
    """What a replay did: the instance it started (or found), or why the record stays open."""

    instance_id: str | None
    started: bool
    still_failing: str | None = None  # e.g. the body is still not a valid event


def replay_instance_id(original: str, generation: int) -> str:
    """The instance a replay starts: the original id (without an earlier replay suffix) + generation."""
    return f"{_REPLAY_SUFFIX.sub('', original)}:replay{generation}"


def replay_marker(request: ReplayRequest) -> dict[str, Any]:
    """Carried in the replayed orchestration's input down to its record step."""
    return {"dead_letter_id": request.letter.id, "generation": request.generation}


def replay_generation(record: dict[str, Any]) -> int:
    """The replay a failure belongs to (0 for the original run): a replay that fails again reopens
    its dead letter."""
    return int((record.get("replay") or {}).get("generation", 0))


def replayed_task(request: ReplayRequest) -> dict[str, Any]:
    """The dead letter's original task or event, to run again: a copy without its retry count, so
    the replay starts from 0."""
    payload = request.letter.payload
    task = dict(payload) if isinstance(payload, dict) else {}
    task.pop("retry_count", None)
    return task


async def start_replay(
    request: ReplayRequest,
    starter: OrchestrationStarter,
    orchestrator: str,
    original_instance_id: str,
    orchestration_input: dict[str, Any],
) -> ReplayStart:
    """Start the replay's orchestration once, under :func:`replay_instance_id`, with the retry
    schedule and the :func:`replay_marker` added to its input."""
    instance_id = replay_instance_id(original_instance_id, request.generation)
    payload = {
        **orchestration_input,
        "retry_delays": list(request.retry_delays),
        "replay": replay_marker(request),
    }
    return ReplayStart(instance_id, await starter.start_once(orchestrator, instance_id, payload))
