"""What the ops routes (and the ``claimsflow`` ops commands on a local run) do with the app's
identity: replay dead letters, flush and compact the lakehouse now.

Replay is registered per dead-letter stage; each domain declares its stages (``XACT_REPLAY``), and a
new domain adds its own mapping here, as it adds its tables to the runtime's catalog.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from shared.claimx.replay import CLAIMX_REPLAY
from shared.clock import utc_now
from shared.durable import OrchestrationStarter
from shared.runtime import Runtime
from shared.state.deadletter import DeadLetterFilter, DeadLetterStatus
from shared.state.replay import ReplayRequest, ReplayStart
from shared.xact.replay import XACT_REPLAY

# Each domain's stages: a handler takes the request, the runtime (it satisfies each domain's
# ReplayServices protocol) and the Durable starter.
ReplayHandler = Callable[..., Awaitable[ReplayStart]]
REPLAY_HANDLERS: dict[str, ReplayHandler] = {**XACT_REPLAY, **CLAIMX_REPLAY}


class ReplayOutcome(StrEnum):
    STARTED = "started"  # a new orchestration (or, for a raw body, ingest) took it
    ALREADY_REPLAYED = "already_replayed"  # the record is not open: nothing new started
    STILL_FAILING = "still_failing"  # tried; the record stays open
    NOT_FOUND = "not_found"
    NO_HANDLER = "no_handler"  # a stage nothing can replay


@dataclass(frozen=True, slots=True)
class ReplayResult:
    id: str
    outcome: ReplayOutcome
    instance_id: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data


async def replay_dead_letters(
    ids: Iterable[str], *, runtime: Runtime, starter: OrchestrationStarter
) -> list[ReplayResult]:
    """Replay each open record once: start its way back in, then mark it ``replayed``.

    A crash between the start and the mark leaves the record open; the next replay computes the same
    instance id, finds the instance and only marks the record."""
    store = runtime.dead_letters
    results: list[ReplayResult] = []
    for letter_id in ids:
        letter = await runtime.pool.run(store.get, letter_id)
        if letter is None:
            results.append(ReplayResult(letter_id, ReplayOutcome.NOT_FOUND))
            continue
        if letter.status is not DeadLetterStatus.OPEN:
            results.append(
                ReplayResult(
                    letter_id, ReplayOutcome.ALREADY_REPLAYED, letter.replay_instance_id, letter.status
                )
            )
            continue
        handler = REPLAY_HANDLERS.get(letter.stage)
        if handler is None:
            results.append(ReplayResult(letter_id, ReplayOutcome.NO_HANDLER, detail=letter.stage))
            continue
        generation = letter.replays + 1
        request = ReplayRequest(letter, generation, runtime.settings.retry_delays_seconds, utc_now())
        start = await handler(request, runtime, starter)
        if start.still_failing:
            results.append(ReplayResult(letter_id, ReplayOutcome.STILL_FAILING, detail=start.still_failing))
            continue
        mark = partial(
            store.set_status,
            letter_id,
            DeadLetterStatus.REPLAYED,
            replays=generation,
            replay_instance_id=start.instance_id,
        )
        await runtime.pool.run(mark)
        results.append(ReplayResult(letter_id, ReplayOutcome.STARTED, start.instance_id))
    return results


def matching_ids(runtime: Runtime, where: DeadLetterFilter) -> list[str]:
    return [letter.id for letter in runtime.dead_letters.iter(where)]


def flush_now(runtime: Runtime) -> list[dict[str, Any]]:
    return [result.to_dict() for result in runtime.lakehouse.flush_all()]


def compact_now(runtime: Runtime) -> list[dict[str, Any]]:
    return [result.to_dict() for result in runtime.lakehouse.compact_all()]
