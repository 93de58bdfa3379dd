"""ClaimX webhook events: parse and validate one body, derive its trace id.

Field names come in camelCase or snake_case; when both are present snake_case wins, and an empty
value counts as absent. A body that is not a JSON object, or lacks ``eventType`` or a numeric
``projectId``, is :class:`InvalidBody` (dead-lettered with the raw text). An unknown event type is
still an event: it gets its ``claimx_events`` row and is counted skipped.

The trace id (the dedup key) is the SHA-256 of ``project_id|event_type|ingested_at`` followed by
``media:<id>``, ``task:<id>``, ``video:<id>`` and ``file:<master file name>`` for each present
value. ``ingested_at`` is the ``ingestedAt`` text exactly as received; an event without it uses the
message's enqueued time, which a redelivery keeps, so its id is stable too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from shared.bodies import InvalidBody, decode_body

PROJECT_CREATED = "PROJECT_CREATED"
PROJECT_MFN_ADDED = "PROJECT_MFN_ADDED"
PROJECT_FILE_ADDED = "PROJECT_FILE_ADDED"
CUSTOM_TASK_ASSIGNED = "CUSTOM_TASK_ASSIGNED"
CUSTOM_TASK_COMPLETED = "CUSTOM_TASK_COMPLETED"
POLICYHOLDER_INVITED = "POLICYHOLDER_INVITED"
POLICYHOLDER_JOINED = "POLICYHOLDER_JOINED"
XA_AUTOLINK_FAILED = "PROJECT_AUTO_XA_LINKING_UNSUCCESSFUL"
VIDEO_INVITE_SENT = "VIDEO_COLLABORATION_INVITE_SENT"
VIDEO_COMPLETED = "VIDEO_COLLABORATION_COMPLETED"

EVENT_TYPES = frozenset(
    {
        PROJECT_CREATED,
        PROJECT_MFN_ADDED,
        PROJECT_FILE_ADDED,
        CUSTOM_TASK_ASSIGNED,
        CUSTOM_TASK_COMPLETED,
        POLICYHOLDER_INVITED,
        POLICYHOLDER_JOINED,
        XA_AUTOLINK_FAILED,
        VIDEO_INVITE_SENT,
        VIDEO_COMPLETED,
    }
)
SKIP_UNKNOWN_TYPE = "unknown_event_type"
# Event Hubs carries at most 1 MB; a ClaimX body is a few hundred bytes. Anything near the limit is
# not a webhook, and refusing it early keeps a hostile body from costing a parse.
MAX_BODY_BYTES = 200_000
MAX_FIELD_CHARS = 1_000  # ids, names and timestamps; a longer one is not a ClaimX value


@dataclass(frozen=True, slots=True)
class ClaimXEvent:
    """A validated ClaimX event with its trace id."""

    trace_id: str
    event_type: str
    project_id: str
    ingested_at_text: str
    ingested_at: datetime
    media_id: str | None = None
    task_assignment_id: str | None = None
    video_collaboration_id: str | None = None
    master_file_name: str | None = None

    @property
    def event_date(self) -> date:
        return self.ingested_at.date()

    @property
    def skip_reason(self) -> str | None:
        return None if self.event_type in EVENT_TYPES else SKIP_UNKNOWN_TYPE

    def to_dict(self) -> dict[str, Any]:
        """JSON-only form for orchestration inputs and dead letters."""
        return {
            "trace_id": self.trace_id,
            "event_type": self.event_type,
            "project_id": self.project_id,
            "ingested_at": self.ingested_at.isoformat(),
            "ingested_at_text": self.ingested_at_text,
            "media_id": self.media_id,
            "task_assignment_id": self.task_assignment_id,
            "video_collaboration_id": self.video_collaboration_id,
            "master_file_name": self.master_file_name,
        }


def trace_id(
    project_id: str,
    event_type: str,
    ingested_at: str,
    *,
    media_id: str | None = None,
    task_assignment_id: str | None = None,
    video_collaboration_id: str | None = None,
    master_file_name: str | None = None,
) -> str:
    """SHA-256 hex of the identifying parts joined with ``|``."""
    parts = [project_id, event_type, ingested_at]
    for prefix, value in (
        ("media", media_id),
        ("task", task_assignment_id),
        ("video", video_collaboration_id),
        ("file", master_file_name),
    ):
        if value is not None:
            parts.append(f"{prefix}:{value}")
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()


class _Invalid(ValueError):
    pass


def parse_claimx_body(body: bytes | str, *, enqueued_at: datetime) -> ClaimXEvent | InvalidBody:
    """Parse one Event Hub body; never raises for bad input. ``enqueued_at`` stands in for a
    missing ``ingestedAt``."""
    raw = decode_body(body, max_bytes=MAX_BODY_BYTES)
    if isinstance(raw, InvalidBody):
        return raw
    try:
        data = json.loads(raw)
    except RecursionError:
        return InvalidBody(raw=raw, reason="not valid JSON: nested too deeply")
    except ValueError as exc:
        return InvalidBody(raw=raw, reason=f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return InvalidBody(raw=raw, reason="body is not a JSON object")
    try:
        return _event(data, enqueued_at)
    except _Invalid as exc:
        return InvalidBody(raw=raw, reason=str(exc))
    except (ValueError, OverflowError, RecursionError) as exc:
        return InvalidBody(raw=raw, reason=f"{type(exc).__name__}: {exc}"[:500])


def _event(data: Mapping[str, Any], enqueued_at: datetime) -> ClaimXEvent:
    event_type = _field(data, "event_type", "eventType")
    if event_type is None:
        raise _Invalid("eventType is missing")
    project_id = _numeric_id(data, "project_id", "projectId")
    if project_id is None:
        raise _Invalid("projectId is missing")
    ingested_text = _field(data, "ingested_at", "ingestedAt")
    if ingested_text is None:
        ingested = _utc(enqueued_at)
        ingested_text = ingested.isoformat()
    else:
        ingested = _parse_time(ingested_text)
    media_id = _id(data, "media_id", "mediaId")
    task_id = _id(data, "task_assignment_id", "taskAssignmentId")
    video_id = _id(data, "video_collaboration_id", "videoCollaborationId")
    master_file_name = _field(data, "master_file_name", "masterFileName")
    return ClaimXEvent(
        trace_id=trace_id(
            project_id,
            event_type,
            ingested_text,
            media_id=media_id,
            task_assignment_id=task_id,
            video_collaboration_id=video_id,
            master_file_name=master_file_name,
        ),
        event_type=event_type,
        project_id=project_id,
        ingested_at_text=ingested_text,
        ingested_at=ingested,
        media_id=media_id,
        task_assignment_id=task_id,
        video_collaboration_id=video_id,
        master_file_name=master_file_name,
    )


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _raw(data: Mapping[str, Any], snake: str, camel: str) -> Any:
    value = data.get(snake)
    return value if _present(value) else data.get(camel)


def _field(data: Mapping[str, Any], snake: str, camel: str) -> str | None:
    """A text field; numbers are taken as their JSON text. Objects and lists are invalid."""
    value = _raw(data, snake, camel)
    if not _present(value):
        return None
    if isinstance(value, (bool, dict | list)):
        raise _Invalid(f"{camel} must be a string or a number")
    text = value.strip() if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_FIELD_CHARS:
        raise _Invalid(f"{camel} is longer than {MAX_FIELD_CHARS} characters")
    return text


def _id(data: Mapping[str, Any], snake: str, camel: str) -> str | None:
    """An identifier as text (``5486872`` and ``"5486872"`` are the same id)."""
    value = _raw(data, snake, camel)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _field({snake: value}, snake, camel)


def _numeric_id(data: Mapping[str, Any], snake: str, camel: str) -> str | None:
    text = _id(data, snake, camel)
    if text is not None and not (text.isascii() and text.isdigit()):
        raise _Invalid(f"{camel} must be numeric, got {text[:40]!r}")
    return text


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _Invalid(f"ingestedAt is not an ISO date-time: {text[:40]!r}") from None
    return _utc(value)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
