"""Telemetry wiring: who configures the exporter, the log context every record carries, JSON log
lines for local runs, and replay-safe orchestrator logging and counting.

Configured once, by the Functions Python worker: with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``
set to ``true`` it calls Azure Monitor's ``configure_azure_monitor`` before it imports the app, and
host.json's ``telemetryMode: OpenTelemetry`` correlates the worker's logs and traces with the host's
invocations. The app never configures an exporter itself (a second configuration would send every
record twice); it only adds the log context to the handlers it finds (docs/architecture.md,
section 13).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Generator, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from shared import metrics
from shared.redact import redact_text

CONTEXT_FIELDS = ("trace_id", "domain", "stage", "instance_id")
TELEMETRY_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "claimsflow_log_context", default=()
)
# Attributes every LogRecord has; anything else on a record came from ``extra`` or our filter.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Within this block every log record carries these fields (``None`` values are left out)."""
    merged = {**dict(_context.get()), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


def activity_log_context(domain: str, stage: str, item: Mapping[str, Any]) -> AbstractContextManager[None]:
    """The log context of an activity: its domain and stage, and the trace and instance its input
    names (a task, an event, or a failure record holding one)."""
    record = item.get("record") or item
    named = record.get("task") or record.get("event") or record
    return log_context(
        domain=domain, stage=stage, trace_id=named.get("trace_id"), instance_id=record.get("instance_id")
    )


class ContextFilter(logging.Filter):
    """Copies the log context onto each record, unless the record set the field itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields and extras, every
    text value redacted (extras are set after the redacting record factory ran)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = redact_text(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


_filter = ContextFilter()


def install_log_context() -> None:
    """Add the context filter to every handler of the root logger (the worker's, Azure Monitor's);
    idempotent, so configuring twice never doubles anything."""
    for handler in logging.getLogger().handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)


def worker_exports_telemetry() -> bool:
    """True when the Python worker configured Azure Monitor for this process."""
    return os.environ.get(TELEMETRY_SETTING, "").strip().lower() == "true"


def json_log_handler(level: int, stream: Any = None) -> logging.Handler:
    """A stderr handler writing JSON lines with the log context (local runs and the CLI)."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_filter)
    return handler


# -- orchestrators ---------------------------------------------------------------------------


class ReplaySafeLogger(logging.LoggerAdapter[logging.Logger]):
    """Logs from an orchestrator only when it is not replaying, so each line appears once."""

    def __init__(self, logger: logging.Logger, context: Any) -> None:
        super().__init__(logger, {"instance_id": context.instance_id})
        self._context = context

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self._context.is_replaying:
            super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def observed_orchestration(
    context: Any, domain: str, orchestrator: str, body: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    """Run an orchestrator body, counting its start, end and failure once each (not on replay)."""
    labels = {"domain": domain, "orchestrator": orchestrator}
    if not context.is_replaying:
        metrics.INSTANCES_STARTED.add(1, **labels)
    try:
        result = yield from body
    except Exception:
        if not context.is_replaying:
            metrics.INSTANCES_FAILED.add(1, **labels)
            metrics.INSTANCES_ENDED.add(1, **labels)
        raise
    if not context.is_replaying:
        metrics.INSTANCES_ENDED.add(1, **labels)
    return result
