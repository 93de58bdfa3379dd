"""One error classifier: every failure is sorted into a category that decides retry or dead letter.

The category tables are in docs/architecture.md, section 5. Activities return :class:`Failure` as data; only
unexpected exceptions raise, and the orchestrator treats those as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import errno
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from shared.redact import redact_text

MAX_ERROR_CHARS = 500
MAX_TRACE_CHARS = 8000


class ErrorCategory(StrEnum):
    TRANSIENT = "transient"
    AUTH = "auth"
    PERMANENT = "permanent"
    CIRCUIT_OPEN = "circuit_open"
    UNKNOWN = "unknown"

    @property
    def is_retryable(self) -> bool:
        return self is not ErrorCategory.PERMANENT


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failure, safe to log and to store (message redacted and capped)."""

    category: ErrorCategory
    message: str
    http_status: int | None = None

    @classmethod
    def of(cls, category: ErrorCategory, message: str, http_status: int | None = None) -> Failure:
        return cls(category, redact_text(message)[:MAX_ERROR_CHARS], http_status)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        return cls.of(classify_exception(exc), f"{type(exc).__name__}: {exc}", _status_of(exc))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["category"] = self.category.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        return cls(ErrorCategory(data["category"]), data["message"], data.get("http_status"))


class ClassifiedError(Exception):
    """Raised inside I/O code to carry a decided category up to the activity boundary."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class ActivityError(Exception):
    """An unexpected failure inside an activity. Its message (summary first, then the traceback)
    is redacted, because the host stores it in the orchestration history."""


@contextmanager
def redacted_errors() -> Iterator[None]:
    """Re-raise any exception as :class:`ActivityError` with secrets removed from its text."""
    try:
        yield
    except Exception as exc:
        summary = f"{type(exc).__name__}: {exc}"
        details = "".join(traceback.format_exception(exc))
        raise ActivityError(redact_text(f"{summary}\n{details}")[-MAX_TRACE_CHARS:]) from None


def classify_http_status(status: int) -> ErrorCategory:
    """The HTTP status table for downloads and other HTTP calls (docs/architecture.md, section 5)."""
    if status in (302, 401):
        return ErrorCategory.AUTH
    if status == 429:
        return ErrorCategory.TRANSIENT
    if 400 <= status < 500:
        return ErrorCategory.PERMANENT
    if status >= 500:
        return ErrorCategory.TRANSIENT
    return ErrorCategory.UNKNOWN


_MESSAGE_RULES: tuple[tuple[tuple[str, ...], ErrorCategory], ...] = (
    (
        (
            "commitfailederror",
            "failed to commit transaction",
            "transaction conflict",
            "version conflict",
            "concurrent modification",
        ),
        ErrorCategory.TRANSIENT,
    ),
    (
        (
            "connection refused",
            "connection reset",
            "connection aborted",
            "no route to host",
            "network unreachable",
            "name resolution",
            "dns",
            "socket",
            "broken pipe",
        ),
        ErrorCategory.TRANSIENT,
    ),
    (("timeout", "timed out"), ErrorCategory.TRANSIENT),
    (("302", "401", "unauthorized", "authentication", "token expired", "invalid token"), ErrorCategory.AUTH),
    (("429", "throttl", "rate limit"), ErrorCategory.TRANSIENT),
    (("503", "502", "504"), ErrorCategory.TRANSIENT),
    (("403", "forbidden", "access denied"), ErrorCategory.PERMANENT),
    (("404", "not found"), ErrorCategory.PERMANENT),
)

# Status codes count as whole words only: "503" inside an id is not a status.
_MESSAGE_PATTERNS = tuple(
    (
        re.compile("|".join(rf"\b{re.escape(n)}\b" if n.isdigit() else re.escape(n) for n in needles)),
        category,
    )
    for needles, category in _MESSAGE_RULES
)
_PERMANENT_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM})


def classify_exception(exc: BaseException) -> ErrorCategory:
    """Exceptions by type first (timeouts, status codes, OS error numbers), then by message words."""
    if isinstance(exc, ClassifiedError):
        return exc.failure.category
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ErrorCategory.TRANSIENT
    status = _status_of(exc)
    if status is not None and status >= 300:
        return classify_http_status(status)
    if isinstance(exc, (UnicodeDecodeError, ValueError)) and "json" in type(exc).__name__.lower():
        return ErrorCategory.PERMANENT
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError) and exc.errno is not None:
        return ErrorCategory.PERMANENT if exc.errno in _PERMANENT_ERRNOS else ErrorCategory.TRANSIENT
    text = f"{type(exc).__name__} {exc}".lower()
    for pattern, category in _MESSAGE_PATTERNS:
        if pattern.search(text):
            return category
    if isinstance(exc, ConnectionError):
        return ErrorCategory.TRANSIENT
    return ErrorCategory.UNKNOWN


_OUTAGE_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)


# azure-core's and aiohttp's transport failures, matched by class name so this leaf imports neither.
_TRANSPORT_ERRORS = frozenset(
    {"ServiceRequestError", "ServiceResponseError", "ClientConnectionError", "ServerTimeoutError"}
)


def is_outage(exc: BaseException) -> bool:
    """Is this a service being unreachable or overloaded (retry forever), rather than something
    about the request? Decided by type and status only, never by words in a message: connection
    errors and timeouts, HTTP 408, 429 and 5xx, and errors already classified transient."""
    if isinstance(exc, ClassifiedError):
        return exc.failure.category in (ErrorCategory.TRANSIENT, ErrorCategory.CIRCUIT_OPEN)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return True
    if any(cls.__name__ in _TRANSPORT_ERRORS for cls in type(exc).__mro__):
        return True
    status = _status_of(exc)
    if status is not None:
        return status in (408, 429) or status >= 500
    return isinstance(exc, OSError) and exc.errno in _OUTAGE_ERRNOS


def _status_of(exc: BaseException) -> int | None:
    for attribute in ("status_code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            return value
    return None
