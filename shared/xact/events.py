"""XACT source events: parse and validate one Event Hub body (docs/architecture.md, section 2).

A body that is not a JSON object of the right shape is :class:`InvalidBody` (dead-lettered with
the raw text); a valid event without ``data.assignmentId`` is still an event, marked skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.ids import event_id as derive_event_id
from shared.ids import status_subtype as derive_status_subtype

SKIP_NO_ASSIGNMENT = "missing_assignment_id"
# Event Hubs carries at most 1 MB; an Azure Table entity (staging) holds 1 MiB of UTF-16 text, so
# the raw body kept in ``xact_events.raw_json`` must stay well under half a million characters.
MAX_BODY_CHARS = 400_000


class XactEnvelope(BaseModel):
    """The wire shape. ``traceId`` or ``trace_id``; ``data`` as a JSON string or an object."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    type: str = Field(min_length=1)
    version: int | str | None = None
    utc_date_time: datetime = Field(validation_alias=AliasChoices("utcDateTime", "utc_date_time"))
    trace_id: str = Field(min_length=1, validation_alias=AliasChoices("traceId", "trace_id"))
    event_id: str | None = Field(None, validation_alias=AliasChoices("eventId", "event_id"))
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", mode="before")
    @classmethod
    def _data_from_string(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("data must be a JSON object or a string holding one")
        return value

    @field_validator("utc_date_time")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class XactEvent:
    """A validated XACT event with its derived fields."""

    trace_id: str
    type: str
    status_subtype: str
    version: str | None
    occurred_at: datetime
    data: dict[str, Any]
    raw: str
    attachments: tuple[str, ...] = field(default=())

    @property
    def event_id(self) -> str:
        """Derived on demand: a duplicate found in the memory cache never pays for it."""
        return derive_event_id(self.trace_id)

    @property
    def assignment_id(self) -> str | None:
        return _text(self.data.get("assignmentId"))

    @property
    def estimate_version(self) -> str | None:
        return _text(self.data.get("estimateVersion"))

    @property
    def event_date(self) -> date:
        return self.occurred_at.date()

    @property
    def skip_reason(self) -> str | None:
        return None if self.assignment_id else SKIP_NO_ASSIGNMENT


@dataclass(frozen=True, slots=True)
class InvalidBody:
    """A body that cannot be an XACT event; kept whole for the dead letter."""

    raw: str
    reason: str


def parse_xact_body(body: bytes | str) -> XactEvent | InvalidBody:
    """Parse one Event Hub body; never raises for bad input."""
    raw = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if len(raw) > MAX_BODY_CHARS:
        return InvalidBody(raw=raw, reason=f"body of {len(raw)} characters exceeds {MAX_BODY_CHARS}")
    try:
        envelope = XactEnvelope.model_validate_json(raw)
    except ValidationError as exc:
        return InvalidBody(raw=raw, reason=_describe(exc))
    except ValueError as exc:
        return InvalidBody(raw=raw, reason=f"not valid JSON: {exc}")
    version = None if envelope.version is None else str(envelope.version)
    return XactEvent(
        trace_id=envelope.trace_id,
        type=envelope.type,
        status_subtype=derive_status_subtype(envelope.type),
        version=version,
        occurred_at=envelope.utc_date_time,
        data=envelope.data,
        raw=raw,
        attachments=attachment_urls(envelope.data.get("attachments")),
    )


def attachment_urls(value: Any) -> tuple[str, ...]:
    """Non-empty string items of a list, in order; anything else means no attachments."""
    if not isinstance(value, list):
        return ()
    return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    if first["type"] in ("json_invalid", "json_type"):
        return f"not valid JSON: {first['msg']}"
    if first["type"] == "model_type":
        return "body is not a JSON object"
    location = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{location}: {first['msg']}"
