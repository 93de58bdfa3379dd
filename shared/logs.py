"""Secrets never reach a log sink: every record is redacted when it is made, whichever logger (ours,
the SDKs') emits it and whichever handler (the host's, OpenTelemetry's) writes it.

The message is merged with its arguments and redacted; ``extra`` fields (set on the record after the
record factory ran, so redacted where ``Logger.makeRecord`` sets them) are redacted value by value;
the traceback of ``log.exception`` is formatted once and redacted, and the exception is replaced by
a :class:`RedactedException` whose message is that text, so a handler that formats ``exc_info``
itself (OpenTelemetry does) finds the whole traceback and no secret; ``stack_info`` likewise.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from shared.redact import redact_text, redact_value

_installed = False


class RedactedException(Exception):
    """Stands in for a logged exception: its message is the original's redacted traceback."""


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed %-format: keep the template, drop the args
        message = str(record.msg)
    record.msg, record.args = redact_text(message), ()
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact_text("".join(traceback.format_exception(record.exc_info[1])).rstrip("\n"))
        record.exc_info = (RedactedException, RedactedException(record.exc_text), None)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


def install_redaction() -> None:
    """Wrap the log-record factory and ``Logger.makeRecord`` once per process (idempotent)."""
    global _installed
    if _installed:
        return
    base_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base_factory(*args, **kwargs)
        _redact_record(record)
        return record

    base_make_record = logging.Logger.makeRecord

    def make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base_make_record(self, *args, **kwargs)
        extra = kwargs.get("extra", args[8] if len(args) > 8 else None)
        for key in extra or ():
            record.__dict__[key] = redact_value(record.__dict__[key])
        return record

    logging.setLogRecordFactory(factory)
    logging.Logger.makeRecord = make_record  # type: ignore[method-assign]
    _installed = True
