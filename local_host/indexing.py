"""Index a function app the way the Functions host does: read ``app.get_functions()``, resolve
``%SETTING%`` references against the app settings, and keep what the local host needs to invoke each
function (trigger type and parameter, durable client parameters, retry policy, schedule)."""

from __future__ import annotations

import inspect
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .cron import CronSchedule

EVENT_HUB_TRIGGER = "eventHubTrigger"
TIMER_TRIGGER = "timerTrigger"
ORCHESTRATION_TRIGGER = "orchestrationTrigger"
ACTIVITY_TRIGGER = "activityTrigger"
HTTP_TRIGGER = "httpTrigger"
DURABLE_CLIENT = "durableClient"

_SETTING_REF = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d+))?$")


class IndexingError(ValueError):
    """The app cannot be indexed (unresolved setting, bad schedule or retry policy)."""


def resolve_setting(value: str, settings: Mapping[str, str], *, where: str) -> str:
    """Replace ``%NAME%`` references like the host's name resolver; unresolved names are an error."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise IndexingError(f"{where}: '%{name}%' does not resolve to a value")
        return settings[name]

    return _SETTING_REF.sub(substitute, value)


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan string (``[d.]hh:mm:ss[.fffffff]``) as used by retry policies."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise IndexingError(f"not a TimeSpan: {text!r}")
    frac = match.group("frac") or "0"
    return timedelta(
        days=int(match.group("days") or 0),
        hours=int(match.group("h")),
        minutes=int(match.group("m")),
        seconds=int(match.group("s")),
        microseconds=int((frac + "000000")[:6]),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """The ``@app.retry(...)`` policy: ``max_retry_count`` retries after the first attempt (-1 = forever)."""

    strategy: str
    max_retry_count: int
    delay_interval: timedelta = timedelta(0)
    minimum_interval: timedelta = timedelta(0)
    maximum_interval: timedelta = timedelta(0)

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any], *, where: str) -> RetryPolicy:
        strategy = str(raw.get("strategy", "")).lower()
        count = int(raw.get("max_retry_count", 0))
        if strategy == "fixed_delay":
            return cls(
                strategy, count, delay_interval=parse_timespan(str(raw.get("delay_interval") or "0:00:00"))
            )
        if strategy == "exponential_backoff":
            return cls(
                strategy,
                count,
                minimum_interval=parse_timespan(str(raw.get("minimum_interval") or "0:00:00")),
                maximum_interval=parse_timespan(str(raw.get("maximum_interval") or "0:00:00")),
            )
        raise IndexingError(f"{where}: unknown retry strategy {raw.get('strategy')!r}")

    def allows_retry(self, retries_done: int) -> bool:
        return self.max_retry_count < 0 or retries_done < self.max_retry_count

    def delay_before(self, retry_number: int) -> timedelta:
        """Delay before retry ``retry_number`` (1-based); exponential doubles from the minimum, capped."""
        if self.strategy == "fixed_delay":
            return self.delay_interval
        delay = self.minimum_interval * (2 ** (retry_number - 1))
        return min(delay, self.maximum_interval) if self.maximum_interval else delay


@dataclass(frozen=True)
class IndexedFunction:
    """One function as the local host invokes it."""

    name: str
    trigger_type: str
    trigger_param: str
    trigger: Mapping[str, Any]
    user_function: Callable[..., Any]
    client_params: tuple[str, ...] = ()
    retry: RetryPolicy | None = None
    schedule: CronSchedule | None = None
    wants_context: bool = False
    is_async: bool = False
    bindings: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    @property
    def event_hub_name(self) -> str | None:
        return self.trigger.get("eventHubName") if self.trigger_type == EVENT_HUB_TRIGGER else None

    @property
    def consumer_group(self) -> str:
        return str(self.trigger.get("consumerGroup") or "$Default")

    @property
    def cardinality_many(self) -> bool:
        return _type_name(self.trigger.get("cardinality") or "one").lower() == "many"

    @property
    def auth_level(self) -> str:
        """``anonymous``, ``function`` (the host's default) or ``admin``."""
        return _type_name(self.trigger.get("authLevel") or "function").lower()


# ``FunctionApp.get_functions()`` may be called once per app (a second call fails its uniqueness
# check), so the functions are kept per app for every LocalHost built on it.
_APP_FUNCTIONS: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def app_functions(app: Any) -> list[Any]:
    if app not in _APP_FUNCTIONS:
        _APP_FUNCTIONS[app] = list(app.get_functions())
    return _APP_FUNCTIONS[app]


def _binding_dicts(function: Any) -> list[dict[str, Any]]:
    return [b.get_dict_repr() for b in function.get_bindings()]


def _type_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def index_app(app: Any, settings: Mapping[str, str]) -> dict[str, IndexedFunction]:
    """Index every function of a v2 ``FunctionApp``/``DFApp``; names must be unique, as in the host."""
    indexed: dict[str, IndexedFunction] = {}
    for function in app_functions(app):
        name = function.get_function_name()
        bindings = _binding_dicts(function)
        trigger = next((b for b in bindings if _type_name(b.get("type")).endswith("Trigger")), None)
        if trigger is None:
            raise IndexingError(f"function {name!r} has no trigger binding")
        trigger_type = _type_name(trigger["type"])
        resolved = dict(trigger)
        for key in ("eventHubName", "consumerGroup", "schedule", "connection"):
            if isinstance(resolved.get(key), str):
                resolved[key] = resolve_setting(resolved[key], settings, where=f"function {name!r} {key}")
        retry_raw = function.get_settings_dict("retry_policy")
        retry = RetryPolicy.from_settings(retry_raw, where=f"function {name!r}") if retry_raw else None
        schedule = None
        if trigger_type == TIMER_TRIGGER:
            try:
                schedule = CronSchedule.parse(resolved["schedule"])
            except ValueError as exc:
                raise IndexingError(f"function {name!r}: {exc}") from exc
        user_function = function.get_user_function()
        target = getattr(user_function, "client_function", user_function)
        try:
            params = inspect.signature(user_function).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if name in indexed:
            raise IndexingError(f"duplicate function name {name!r}")
        indexed[name] = IndexedFunction(
            name=name,
            trigger_type=trigger_type,
            trigger_param=str(trigger["name"]),
            trigger=resolved,
            user_function=user_function,
            client_params=tuple(
                str(b["name"]) for b in bindings if _type_name(b.get("type")) == DURABLE_CLIENT
            ),
            retry=retry,
            schedule=schedule,
            wants_context="context" in params and trigger["name"] != "context",
            is_async=inspect.iscoroutinefunction(user_function) or inspect.iscoroutinefunction(target),
            bindings=tuple(bindings),
        )
    return indexed
