"""Deterministic identifiers (docs/architecture.md, section 6): replays and redeliveries keep the
same ids. The namespace URLs are compatibility constants from the replaced system."""

from __future__ import annotations

import uuid

from shared.redact import strip_query

EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://nsmkdvPipe/event_id")
MEDIA_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "http://xactPipeline/media_id")


def event_id(trace_id: str) -> str:
    """UUIDv5 of the trace id: ``xact_events.event_id``."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, trace_id))


def media_id(trace_id: str, url: str) -> str:
    """UUIDv5 of ``trace_id:url-without-query``: presigned signatures rotate, the file does not."""
    return str(uuid.uuid5(MEDIA_ID_NAMESPACE, f"{trace_id}:{strip_query(url)}"))


def status_subtype(event_type: str) -> str:
    """The text after the last dot of the event type (``...xn.documentsReceived`` → ``documentsReceived``)."""
    return event_type.rsplit(".", 1)[-1]


def xact_instance_id(event_id_value: str) -> str:
    """Durable instance id of an XACT event orchestration: a redelivery cannot start a second one."""
    return f"xact-{event_id_value}"


def attachment_instance_id(parent_instance_id: str, media_id_value: str) -> str:
    return f"{parent_instance_id}:{media_id_value}"
