"""XACT source events: parse and validate one Event Hub body (docs/architecture.md, section 2).

Nothing a body holds can make :func:`parse_xact_body` raise: a body that is not a JSON object of
the right shape, or that nothing downstream could store (a date outside what Azure Tables keep,
nesting deeper than any real event, bytes that are not UTF-8), is :class:`InvalidBody`, dead-
lettered with its raw text. A value that cannot be stored as text (a lone UTF-16 surrogate that an
escape in ``data`` spells) is refused when its row is encoded for staging. A valid event without
``data.assignmentId`` is still an event, skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.bodies import InvalidBody, decode_body
from shared.ids import event_id as derive_event_id
from shared.ids import status_subtype as derive_status_subtype

SKIP_NO_ASSIGNMENT = "missing_assignment_id"
# The largest body whose xact_events row always fits one Azure Table entity (1 MiB): raw_json and
# the columns taken from it (description, note, ...) each hold at most the body's text. Stored, a
# body byte costs at most 2 bytes by Azure's UTF-16 formula and at most 3 in the JSON request that
# carries the entity (a two-byte UTF-8 character becomes a six-byte \uXXXX escape), so two copies
# of 170,000 bytes take at most 1,020,000 and leave room for the other columns. Event Hubs carries
# up to 1 MB; larger bodies are invalid (dead-lettered, payload in a blob).
MAX_BODY_BYTES = 170_000
MAX_TRACE_ID_CHARS = 256
MAX_DEPTH = 32  # arrays and objects inside one another; real events use five
# Azure Tables keep Edm.DateTime from 1601-01-01 to 9999-12-31 (UTC).
EARLIEST = datetime(1601, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class XactEnvelope(BaseModel):
    """The wire shape. ``traceId`` or ``trace_id``; ``data`` as a JSON string or an object."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    type: str = Field(min_length=1)
    version: int | str | None = None
    utc_date_time: datetime = Field(validation_alias=AliasChoices("utcDateTime", "utc_date_time"))
    trace_id: str = Field(
        min_length=1, max_length=MAX_TRACE_ID_CHARS, validation_alias=AliasChoices("traceId", "trace_id")
    )
    event_id: str | None = Field(None, validation_alias=AliasChoices("eventId", "event_id"))
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", mode="before")
    @classmethod
    def _data_from_string(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except RecursionError:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
        if not isinstance(value, dict):
            raise ValueError("data must be a JSON object or a string holding one")
        return value

    @field_validator("utc_date_time")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        try:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None
        if not EARLIEST <= value <= LATEST:
            raise ValueError("outside 1601-01-01 .. 9999-12-31 UTC")
        return value


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
        return text_of(self.data.get("assignmentId"))

    @property
    def estimate_version(self) -> str | None:
        return text_of(self.data.get("estimateVersion"))

    @property
    def event_date(self) -> date:
        return self.occurred_at.date()

    @property
    def skip_reason(self) -> str | None:
        return None if self.assignment_id else SKIP_NO_ASSIGNMENT


def parse_xact_body(body: bytes | str) -> XactEvent | InvalidBody:
    """Parse one Event Hub body; never raises, whatever the body holds."""
    decoded = decode_body(body, max_bytes=MAX_BODY_BYTES)
    if isinstance(decoded, InvalidBody):
        return decoded
    try:
        return _parse(decoded)
    except ValidationError as exc:
        return InvalidBody(raw=decoded, reason=_describe(exc))
    except RecursionError:
        return InvalidBody(raw=decoded, reason=f"nested deeper than {MAX_DEPTH} levels")
    except Exception as exc:  # containment: whatever else a body makes the parser raise is its own
        return InvalidBody(raw=decoded, reason=f"cannot be read ({type(exc).__name__})")


def _parse(raw: str) -> XactEvent | InvalidBody:
    envelope = XactEnvelope.model_validate_json(raw)
    # A cheap guard first: nesting this deep needs as many brackets.
    if raw.count("{") + raw.count("[") > MAX_DEPTH and _too_deep(envelope):
        return InvalidBody(raw=raw, reason=f"nested deeper than {MAX_DEPTH} levels")
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


def depth_of(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


def _too_deep(envelope: XactEnvelope) -> bool:
    return max(depth_of(envelope.data), depth_of(envelope.model_extra)) > MAX_DEPTH


def attachment_urls(value: Any) -> tuple[str, ...]:
    """Non-empty string items of a list, in order; anything else means no attachments."""
    if not isinstance(value, list):
        return ()
    return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())


def text_of(value: Any) -> str | None:
    """A scalar as stripped text (``None`` when empty); objects and arrays are not text."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _describe(exc: ValidationError) -> str:
    first = exc.errors(include_input=False, include_url=False)[0]
    if first["type"] in ("json_invalid", "json_type"):
        return f"not valid JSON: {first['msg']}"
    if first["type"] == "model_type":
        return "body is not a JSON object"
    location = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{location}: {first['msg']}"
