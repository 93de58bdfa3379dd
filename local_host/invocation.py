"""Invoking trigger functions the way the Python worker does: trigger input built by the library's
own converters (Event Hub batches, timer requests), durable client bindings as JSON strings, an
optional ``context``, and the host's retry policies with delays on the virtual clock."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter
from azure.functions.timer import TimerRequestConverter

from .clock import VirtualClock
from .history import timestamp
from .indexing import IndexedFunction

log = logging.getLogger("local_host.invocation")


@dataclass(frozen=True)
class RetryContext:
    retry_count: int
    max_retry_count: int
    exception: Exception | None = None


@dataclass(frozen=True)
class InvocationContext:
    """What a function receives as ``context`` (the parts of ``func.Context`` apps use)."""

    invocation_id: str
    function_name: str
    function_directory: str
    retry_context: RetryContext
    trace_context: Any = None
    thread_local_storage: Any = None


@dataclass
class DeliveryOutcome:
    """Result of delivering one trigger payload to one function, retries included."""

    function_name: str
    attempts: int
    succeeded: bool
    errors: list[BaseException] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return self.attempts - 1

    @property
    def gave_up(self) -> bool:
        return not self.succeeded

    @property
    def last_error(self) -> BaseException | None:
        return self.errors[-1] if self.errors else None


@dataclass
class PartitionCursor:
    """Sequence numbers and byte offsets of one Event Hub partition, as the service assigns them."""

    next_sequence: int = 0
    next_offset: int = 0


def build_event_hub_batch(
    *,
    hub_name: str,
    consumer_group: str,
    partition_id: str,
    bodies: Sequence[bytes | str],
    cursor: PartitionCursor,
    enqueued_time: datetime,
    partition_key: str | None,
    enqueued_times: Sequence[datetime] | None = None,
    properties: Sequence[dict[str, Any]] | None,
    function_name: str,
) -> list[func.EventHubEvent]:
    """A ``cardinality=many`` batch built by the library's ``EventHubTriggerConverter`` from the
    trigger metadata the Event Hubs extension sends (``SystemPropertiesArray`` and the arrays)."""
    raw = [b.encode() if isinstance(b, str) else bytes(b) for b in bodies]
    if enqueued_times is not None and len(enqueued_times) != len(raw):
        raise ValueError("enqueued_times must have one entry per body")
    times = (
        [timestamp(t) for t in enqueued_times] if enqueued_times else [timestamp(enqueued_time)] * len(raw)
    )
    enqueued = timestamp(enqueued_time)
    sequences, offsets = [], []
    for body in raw:
        sequences.append(cursor.next_sequence)
        offsets.append(cursor.next_offset)
        cursor.next_sequence += 1
        cursor.next_offset += len(body)
    system = [
        {
            "x-opt-sequence-number": seq,
            "x-opt-offset": str(off),
            "x-opt-enqueued-time": at,
            "x-opt-partition-key": partition_key,
            "SequenceNumber": seq,
            "Offset": str(off),
            "PartitionKey": partition_key,
            "EnqueuedTimeUtc": at,
        }
        for seq, off, at in zip(sequences, offsets, times, strict=True)
    ]
    user_properties = list(properties) if properties is not None else [{} for _ in raw]
    if len(user_properties) != len(raw):
        raise ValueError("properties must have one entry per body")
    context = {
        "ConsumerGroup": consumer_group,
        "EventHubName": hub_name,
        "FullyQualifiedNamespace": "localhost",
        "PartitionId": partition_id,
    }
    metadata = {
        "PartitionContext": meta.Datum(json.dumps(context), "json"),
        "PartitionKeyArray": meta.Datum(json.dumps([partition_key] * len(raw)), "json"),
        "OffsetArray": meta.Datum(json.dumps([str(o) for o in offsets]), "json"),
        "SequenceNumberArray": meta.Datum(json.dumps(sequences), "json"),
        "EnqueuedTimeUtcArray": meta.Datum(json.dumps(times), "json"),
        "PropertiesArray": meta.Datum(json.dumps(user_properties), "json"),
        "SystemPropertiesArray": meta.Datum(json.dumps(system), "json"),
        "sys": meta.Datum(
            json.dumps({"MethodName": function_name, "UtcNow": enqueued, "RandGuid": str(uuid.uuid4())}),
            "json",
        ),
    }
    data = meta.Datum(SimpleNamespace(bytes=raw), "collection_bytes")
    events = EventHubTriggerConverter.decode(data, trigger_metadata=metadata)
    assert isinstance(events, list)
    return events


def build_timer_request(
    *, past_due: bool, last: datetime | None, next_due: datetime | None
) -> func.TimerRequest:
    status = {
        "Last": timestamp(last) if last else None,
        "Next": timestamp(next_due) if next_due else None,
        "LastUpdated": timestamp(last) if last else None,
    }
    payload = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
    request = TimerRequestConverter.decode(meta.Datum(json.dumps(payload), "json"), trigger_metadata={})
    assert isinstance(request, func.TimerRequest)
    return request


async def invoke_with_retries(
    function: IndexedFunction,
    trigger_value: Any,
    *,
    bindings: dict[str, Any],
    clock: VirtualClock,
) -> DeliveryOutcome:
    """Invoke once, and again with the same payload while the function's retry policy allows;
    the delay between attempts passes on the virtual clock."""
    outcome = DeliveryOutcome(function.name, attempts=0, succeeded=False)
    policy = function.retry
    max_retries = policy.max_retry_count if policy else 0
    while True:
        kwargs = {function.trigger_param: trigger_value, **bindings}
        if function.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id=str(uuid.uuid4()),
                function_name=function.name,
                function_directory="",
                retry_context=RetryContext(outcome.attempts, max_retries, outcome.last_error),  # type: ignore[arg-type]
            )
        outcome.attempts += 1
        try:
            if function.is_async:
                await function.user_function(**kwargs)
            else:
                await asyncio.to_thread(function.user_function, **kwargs)
        except Exception as exc:
            outcome.errors.append(exc)
            retries_done = outcome.attempts - 1
            if policy is None or not policy.allows_retry(retries_done):
                log.error("function %s gave up after %d attempt(s): %r", function.name, outcome.attempts, exc)
                return outcome
            log.warning("function %s failed (attempt %d), retrying: %r", function.name, outcome.attempts, exc)
            clock.advance(policy.delay_before(retries_done + 1))
            continue
        outcome.succeeded = True
        return outcome
