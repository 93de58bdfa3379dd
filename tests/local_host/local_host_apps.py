"""Small function apps for the local host tests (the real function_app.py is not needed)."""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from local_host import LocalHost
from shared.clock import utc_now

START = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
HOST_KEY = "test-host-key"
MakeHost = Callable[..., Awaitable[LocalHost]]  # the make_host fixture
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=3)

# Activity invocation counts, keyed by (activity, input); tests reset it.
calls: Counter[tuple[str, str]] = Counter()

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext) -> Any:
    first = yield context.call_activity("hello", "a")
    second = yield context.call_activity("hello", "b")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext) -> Any:
    names = context.get_input() or ["a", "b", "c"]
    results = yield context.task_all([context.call_activity("hello", n) for n in names])
    return results


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_sub_orchestrator("chain", None, f"{context.instance_id}-child")
    return {"child": result}


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext) -> Any:
    minutes = context.get_input() or 40
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=minutes))
    return "woke"


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity_with_retry("flaky", RETRY, context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext) -> Any:
    yield context.call_activity("boom", "x")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def waiter(context: df.DurableOrchestrationContext) -> Any:
    context.set_custom_status({"stage": "waiting"})
    approval = yield context.wait_for_external_event("approval")
    return {"approved": approval}


@app.orchestration_trigger(context_name="context")
def two_steps(context: df.DurableOrchestrationContext) -> Any:
    """Activity, 10-minute timer, activity: leaves instances pending at a timer mid-run."""
    key = context.get_input()
    yield context.call_activity("record", f"{key}:before")
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=10))
    yield context.call_activity("record", f"{key}:after")
    return key


@app.orchestration_trigger(context_name="context")
def calls_missing(context: df.DurableOrchestrationContext) -> Any:
    yield context.call_activity("no_such_activity", None)


@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    calls[("hello", name)] += 1
    return f"hello {name}"


@app.activity_trigger(input_name="spec")
def flaky(spec: dict[str, Any]) -> dict[str, Any]:
    """Fails the first ``spec['failures']`` attempts for ``spec['key']``."""
    calls[("flaky", spec["key"])] += 1
    attempt = calls[("flaky", spec["key"])]
    if attempt <= spec["failures"]:
        raise ConnectionError(f"attempt {attempt} failed")
    return {"attempts": attempt}


@app.activity_trigger(input_name="value")
def boom(value: str) -> str:
    raise ValueError(f"boom {value}")


@app.activity_trigger(input_name="key")
async def record(key: str) -> str:
    calls[("record", key)] += 1
    return key


GATE = {"open": False}


@app.orchestration_trigger(context_name="context")
def gated(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity("gate", "g")
    return result


@app.activity_trigger(input_name="key")
async def gate(key: str) -> str:
    """Blocks until GATE['open'] is set: an activity in flight when a host stops."""
    calls[("gate", key)] += 1
    while not GATE["open"]:
        await asyncio.sleep(0.01)
    return "passed"


# A second app with triggers (one app instance per indexing, as in the host).
eh_app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
deliveries: list[list[func.EventHubEvent]] = []
ticks: list[func.TimerRequest] = []


@eh_app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:10")
@eh_app.event_hub_message_trigger(
    arg_name="events", event_hub_name="%CLAIMS_HUB%", connection="EventHubConnection", cardinality="many"
)
@eh_app.durable_client_input(client_name="client")
async def ingest(events: list[func.EventHubEvent], client: df.DurableOrchestrationClient) -> None:
    deliveries.append(events)
    if len(deliveries) == 1:
        raise ConnectionError("transient failure on first delivery")
    for item in events:
        await client.start_new("echo", f"echo-{item.sequence_number}", item.get_body().decode())


@eh_app.retry(
    strategy="exponential_backoff",
    max_retry_count="2",
    minimum_interval="00:00:01",
    maximum_interval="00:00:03",
)
@eh_app.event_hub_message_trigger(
    arg_name="events", event_hub_name="poison", connection="EventHubConnection", cardinality="many"
)
def always_fails(events: list[func.EventHubEvent]) -> None:
    raise ValueError(f"cannot handle {len(events)} events")


@eh_app.timer_trigger(schedule="0 */5 * * * *", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    ticks.append(timer)


@eh_app.orchestration_trigger(context_name="context")
def echo(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity("shout", context.get_input())
    return result


@eh_app.activity_trigger(input_name="text")
def shout(text: str) -> str:
    return text.upper()


# -- non-determinism: the activity flips what the orchestrator schedules on its next replay ------

FICKLE: dict[str, Any] = {"activity": "flip", "timer": False, "change": "name"}


@app.orchestration_trigger(context_name="context")
def fickle(context: df.DurableOrchestrationContext) -> Any:
    if FICKLE["timer"]:
        yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
    else:
        yield context.call_activity(FICKLE["activity"], "a")
    second = yield context.call_activity("hello", "b")
    return second


@app.activity_trigger(input_name="value")
def flip(value: str) -> str:
    """Changes the code path of ``fickle`` under its running instance (as a redeploy would): the
    activity's name, or an activity into a timer (FICKLE["change"])."""
    if FICKLE["change"] == "kind":
        FICKLE["timer"] = True
    else:
        FICKLE["activity"] = "hello"
    return "flipped"


@app.orchestration_trigger(context_name="context")
def forgetful(context: df.DurableOrchestrationContext) -> Any:
    """Schedules ``flip`` only while FICKLE says so (a replay that drops a recorded task)."""
    if FICKLE["activity"] == "flip":
        yield context.call_activity("flip", "a")
    yield context.wait_for_external_event("never")
    return "done"


# -- independent completion and limits -------------------------------------------------------------

HELD: dict[str, asyncio.Event] = {}
finished: list[str] = []


def held(key: str) -> asyncio.Event:
    return HELD.setdefault(key, asyncio.Event())


@app.orchestration_trigger(context_name="context")
def waits_for_release(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity("hold", context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def releases(context: df.DurableOrchestrationContext) -> Any:
    key = context.get_input()
    first = yield context.call_activity("hello", f"{key}-1")
    second = yield context.call_activity("hello", f"{key}-2")
    yield context.call_activity("release", key)
    return [first, second]


@app.activity_trigger(input_name="key")
async def hold(key: str) -> str:
    """Returns only once ``release`` ran for the same key (never, when nobody releases it)."""
    await held(key).wait()
    finished.append(f"hold {key}")
    return f"released {key}"


@app.activity_trigger(input_name="key")
async def release(key: str) -> str:
    finished.append(f"release {key}")
    held(key).set()
    return key


ACTIVE = {"now": 0, "most": 0}


@app.orchestration_trigger(context_name="context")
def crowd(context: df.DurableOrchestrationContext) -> Any:
    count = context.get_input()
    results = yield context.task_all([context.call_activity("busy", n) for n in range(count)])
    return results


@app.activity_trigger(input_name="n")
async def busy(n: int) -> int:
    """Stays running until a second activity runs beside it, and records how many ran at once."""
    ACTIVE["now"] += 1
    ACTIVE["most"] = max(ACTIVE["most"], ACTIVE["now"])
    while ACTIVE["most"] < 2:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0)
    ACTIVE["now"] -= 1
    return n


@app.orchestration_trigger(context_name="context")
def clock_reader(context: df.DurableOrchestrationContext) -> Any:
    before = yield context.call_activity("what_time", None)
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=25))
    after = yield context.call_activity("what_time", None)
    return [before, after]


@app.activity_trigger(input_name="unused")
def what_time(unused: None) -> str:
    return utc_now().isoformat()


# -- HTTP functions on the trigger app -------------------------------------------------------------


@eh_app.route(route="open/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def open_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}", mimetype="text/plain")


@eh_app.route(route="guarded", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
async def guarded(req: func.HttpRequest) -> func.HttpResponse:
    body = {"method": req.method, "body": req.get_body().decode(), "q": req.params.get("q")}
    return func.HttpResponse(json.dumps(body), status_code=201, mimetype="application/json")


@eh_app.route(route="ops/reset", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("reset", status_code=200)


# -- an Event Hub function that writes down what it got (for the crash tests' child process) -------

DELIVERY_LOG = "LOCAL_HOST_DELIVERY_LOG"


@eh_app.event_hub_message_trigger(
    arg_name="events", event_hub_name="ledger", connection="EventHubConnection", cardinality="many"
)
def ledger(events: list[func.EventHubEvent]) -> None:
    deliveries.append(events)
    path = os.environ.get(DELIVERY_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write("".join(f"{e.sequence_number}\n" for e in events))


@eh_app.event_hub_message_trigger(
    arg_name="event", event_hub_name="singles", connection="EventHubConnection", consumer_group="audit"
)
def one_at_a_time(event: func.EventHubEvent) -> None:
    deliveries.append([event])


@app.orchestration_trigger(context_name="context")
def big_result(context: df.DurableOrchestrationContext) -> Any:
    text = yield context.call_activity("big", context.get_input())
    return len(text)


@app.activity_trigger(input_name="size")
def big(size: int) -> str:
    return "x" * size


@app.orchestration_trigger(context_name="context")
def warns(context: df.DurableOrchestrationContext) -> Any:
    """Warns twice: the host reports the runtime warning and, as Python does by default, not the
    deprecation."""
    warnings.warn("orchestrator code smells", RuntimeWarning, stacklevel=1)
    warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    result = yield context.call_activity("hello", "w")
    return result
