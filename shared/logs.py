"""Secrets never reach a log sink: every record's message is redacted when the record is created,
whichever logger (ours, the SDKs') emits it and whichever handler (the host's) writes it.
``extra`` fields are set after creation, so code that logs URLs as extras redacts them itself."""

from __future__ import annotations

import logging
from typing import Any

from shared.redact import redact_text

_installed = False


def install_redaction() -> None:
    """Wrap the log-record factory once per process (idempotent)."""
    global _installed
    if _installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed %-format: keep the template, drop the args
            message = str(record.msg)
        record.msg, record.args = redact_text(message), ()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
