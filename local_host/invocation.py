"""Invoking functions the way the host and the Python worker do: trigger input built by the
library's own converters, durable client bindings as JSON strings, an optional ``context``,
``functionTimeout`` enforced, and the host's retry policies with delays on the virtual clock."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

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


class FunctionTimeoutException(Exception):
    """A function ran longer than host.json's ``functionTimeout`` (the host's own exception name)."""


def format_timespan(value: timedelta) -> str:
    """A duration as .NET prints a TimeSpan (``[d.]hh:mm:ss[.fffffff]``), as in the host's messages."""
    ticks = round(value.total_seconds() * 10_000_000)
    days, rest = divmod(ticks, 864_000_000_000)
    hours, rest = divmod(rest, 36_000_000_000)
    minutes, rest = divmod(rest, 600_000_000)
    seconds, fraction = divmod(rest, 10_000_000)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return (f"{days}." if days else "") + text + (f".{fraction:07d}" if fraction else "")


async def call_with_timeout(
    function: IndexedFunction,
    kwargs: Mapping[str, Any],
    timeout: timedelta | None,
    invocation_id: str | None = None,
    *,
    executor: Executor | None = None,
) -> Any:
    """Call a function (a synchronous one on a worker thread) and fail it with the host's error
    when it runs longer than ``timeout``; the wall clock counts here, as in the host."""
    if function.is_async:
        call: Awaitable[Any] = function.user_function(**kwargs)
    else:
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(executor, functools.partial(function.user_function, **kwargs))
    if timeout is None:
        return await call
    try:
        return await asyncio.wait_for(call, timeout.total_seconds())
    except TimeoutError:
        raise FunctionTimeoutException(
            f"Timeout value of {format_timespan(timeout)} exceeded by function 'Functions.{function.name}' "
            f"(Id: '{invocation_id or uuid.uuid4()}'). Initiating cancellation."
        ) from None


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
    timeout: timedelta | None,
    wait: Callable[[timedelta], Awaitable[None]],
) -> DeliveryOutcome:
    """Invoke once, and again with the same payload while the function's retry policy allows;
    ``wait`` lets the delay between attempts pass (on the virtual clock)."""
    outcome = DeliveryOutcome(function.name, attempts=0, succeeded=False)
    policy = function.retry
    max_retries = policy.max_retry_count if policy else 0
    while True:
        invocation_id = str(uuid.uuid4())
        kwargs = {function.trigger_param: trigger_value, **bindings}
        if function.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id=invocation_id,
                function_name=function.name,
                function_directory="",
                retry_context=RetryContext(outcome.attempts, max_retries, outcome.last_error),  # type: ignore[arg-type]
            )
        outcome.attempts += 1
        try:
            await call_with_timeout(function, kwargs, timeout, invocation_id)
        except Exception as exc:
            outcome.errors.append(exc)
            retries_done = outcome.attempts - 1
            if policy is None or not policy.allows_retry(retries_done):
                log.error("function %s gave up after %d attempt(s): %r", function.name, outcome.attempts, exc)
                return outcome
            log.warning("function %s failed (attempt %d), retrying: %r", function.name, outcome.attempts, exc)
            await wait(policy.delay_before(retries_done + 1))
            continue
        outcome.succeeded = True
        return outcome
