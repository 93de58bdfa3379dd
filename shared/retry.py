"""Retry by error class inside an orchestrator, with durable timers (deterministic, no I/O), and the
recording of an outcome that must never be silent.

Python's ``RetryOptions`` has no backoff list and no error predicate, so the loop is ours:
PERMANENT stops at once; TRANSIENT, AUTH, CIRCUIT_OPEN and UNKNOWN wait ``delays[n]`` and try
again, so ``len(delays)`` retries follow the first attempt (docs/architecture.md, section 5).
Activities return :func:`ok` / :func:`failed` envelopes; an activity that raises counts as UNKNOWN.

A caller that passes ``circuit_waits`` waits for an open circuit instead: a CIRCUIT_OPEN outcome
that says when the circuit may be tried again (:func:`refused_until`) sleeps on a durable timer
until then and tries again without spending a retry, at most ``circuit_waits`` times per call.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import metrics
from shared.domains import Domain
from shared.errors import MAX_ERROR_CHARS, ErrorCategory, Failure
from shared.redact import redact_text
from shared.telemetry import ReplaySafeLogger

log = logging.getLogger(__name__)

Outcome = dict[str, Any]


def ok(value: Any = None) -> Outcome:
    return {"ok": True, "value": value}


def failed(failure: Failure) -> Outcome:
    return {"ok": False, "failure": failure.to_dict()}


def refused_until(failure: Failure, retry_at: datetime) -> Outcome:
    """A refusal by an open circuit, with the moment the call may be tried again."""
    return {"ok": False, "failure": failure.to_dict(), "retry_at": retry_at.isoformat()}


def outcome_failure(outcome: Outcome) -> Failure | None:
    return None if outcome["ok"] else Failure.from_dict(outcome["failure"])


def activity_exception_failure(exc: BaseException) -> Failure:
    """An activity raised: the host reports ``Reason \\n Details``; keep the reason, redacted."""
    reason = str(exc).split("\n", 1)[0].strip() or type(exc).__name__
    return Failure(ErrorCategory.UNKNOWN, redact_text(reason)[:MAX_ERROR_CHARS])


def call_with_retries(
    context: Any,
    activity: str,
    payload: dict[str, Any],
    delays: Sequence[int],
    *,
    circuit_waits: int = 0,
) -> Generator[Any, Any, tuple[Outcome, int]]:
    """``outcome, retries = yield from call_with_retries(...)`` inside an orchestrator."""
    retries = 0
    waits = 0
    while True:
        try:
            outcome: Outcome = yield context.call_activity(activity, {**payload, "retry_count": retries})
        except Exception as exc:  # the activity raised: unexpected, classified UNKNOWN
            outcome = failed(activity_exception_failure(exc))
        failure = outcome_failure(outcome)
        if failure is None or not failure.category.is_retryable:
            return outcome, retries
        retry_at = outcome.get("retry_at")
        if failure.category is ErrorCategory.CIRCUIT_OPEN and retry_at and waits < circuit_waits:
            waits += 1
            now: datetime = context.current_utc_datetime
            fire_at = datetime.fromisoformat(retry_at)
            if now.tzinfo is None:
                fire_at = fire_at.astimezone(UTC).replace(tzinfo=None)
            yield context.create_timer(max(fire_at, now + timedelta(seconds=1)))
            continue
        if retries >= len(delays):
            return outcome, retries
        fire_at = context.current_utc_datetime + timedelta(seconds=delays[retries])
        domain = Domain.of_name(activity).value
        if not context.is_replaying:
            metrics.RETRIES.add(domain=domain, category=failure.category.value)
        ReplaySafeLogger(log, context).info(
            "%s failed (%s); retry %d in %d s",
            activity,
            failure.category.value,
            retries + 1,
            delays[retries],
            extra={"stage": activity, "domain": domain, "error_category": failure.category.value},
        )
        yield context.create_timer(fire_at)
        if not context.is_replaying:
            metrics.RETRIES_FIRED.add(domain=domain)
        retries += 1


class RecordingFailed(Exception):
    """Recording an outcome failed for good. Raised in the orchestrator so the instance fails: the
    failed-instance listing shows it, and the purge timer never removes a failed instance."""


def record_or_fail(
    context: Any, activity: str, fallback: str, record: dict[str, Any], delays: Sequence[int]
) -> Generator[Any, Any, Any]:
    """``value = yield from record_or_fail(...)``: run the record activity with retries by class;
    if it still fails, write the dead letter through ``fallback`` (blob storage, a path that does
    not depend on the tables that failed), then fail the instance either way.

    The record travels as ``{"record": ...}``: :func:`call_with_retries` puts its own
    ``retry_count`` beside it, which must not overwrite the failed step's."""
    outcome, _ = yield from call_with_retries(context, activity, {"record": record}, delays)
    failure = outcome_failure(outcome)
    if failure is None:
        return outcome["value"]
    unrecorded = {**record, "unrecorded_because": failure.to_dict()}
    saved, _ = yield from call_with_retries(context, fallback, {"record": unrecorded}, delays)
    where = (
        "its dead letter was written to blob storage"
        if outcome_failure(saved) is None
        else "the blob fallback failed too; this instance's history holds the only record"
    )
    raise RecordingFailed(
        f"{activity} failed for good ({failure.category.value}: {failure.message}); {where}"
    )


def transfer_or_record(
    context: Any, *, kind: str, transfer: str, record: str, fallback: str, circuit_waits: int = 0
) -> Generator[Any, Any, dict[str, Any]]:
    """The whole of a per-file sub-orchestration, the same in every domain: ``transfer`` with
    retries by class (an uploaded file's row is staged by that activity itself); a file that still
    fails is recorded, its failed row and dead letter, by ``record`` through :func:`record_or_fail`.
    Input ``{"task", "retry_delays", "replay"?}``; a replayed transfer also marks the failed row it
    recovers."""
    payload: dict[str, Any] = context.get_input()
    task: dict[str, Any] = payload["task"]
    delays: list[int] = payload["retry_delays"]
    replay = payload.get("replay")
    attempt = {**task, "replay": replay} if replay else task
    outcome, retries = yield from call_with_retries(
        context, transfer, attempt, delays, circuit_waits=circuit_waits
    )
    failure = outcome_failure(outcome)
    if failure is None:
        return {"media_id": task["media_id"], "status": "uploaded", "retry_count": retries}
    failed_file = {
        "kind": kind,
        "task": task,
        "failure": failure.to_dict(),
        "retry_count": retries,
        "exhausted": failure.category.is_retryable,
        "instance_id": context.instance_id,
        "replay": replay,
    }
    status = yield from record_or_fail(context, record, fallback, failed_file, delays)
    return {"media_id": task["media_id"], "status": status, "retry_count": retries}
