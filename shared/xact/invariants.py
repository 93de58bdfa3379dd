"""The promise "nothing lost, nothing doubled", checked on what a run left behind.

Every accepted event's orchestration ended; every attachment of an event that reached its
attachments stage is in exactly one of ``xact_attachments`` and ``xact_attachments_failed``; every
attachment that failed after a download attempt, and every event whose enrichment failed, has its
dead letter. The inputs are plain data, so a run, a test or an ops command can gather them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.ids import media_id
from shared.transfer.attachment import AttachmentStatus

MAX_VIOLATIONS = 50
DEAD_LETTERED_STATUSES = frozenset({AttachmentStatus.FAILED_PERMANENT, AttachmentStatus.EXHAUSTED})


@dataclass(frozen=True, slots=True)
class EventInstance:
    """An event orchestration as the management API shows it: status, input and output."""

    instance_id: str
    runtime_status: str
    input: Mapping[str, Any]
    output: Any = None


@dataclass(slots=True)
class InvariantReport:
    events: int = 0
    attachments: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violate(self, message: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events_checked": self.events,
            "attachments_checked": self.attachments,
            "violations": list(self.violations),
        }


def check_invariants(
    *,
    accepted_trace_ids: Iterable[str],
    event_instances: Mapping[str, EventInstance],
    uploaded: Iterable[str],
    failed: Mapping[str, str],
    dead_letter_ids: Iterable[str],
) -> InvariantReport:
    """``accepted_trace_ids``: the events with an assignment (xact_events rows that were not
    skipped); ``event_instances`` by trace id; ``uploaded``: media ids in ``xact_attachments``;
    ``failed``: media id -> status in ``xact_attachments_failed``; ``dead_letter_ids``: every
    dead-letter id."""
    report = InvariantReport()
    letters = set(dead_letter_ids)
    uploaded_counts = Counter(uploaded)
    for media, count in uploaded_counts.items():
        if count > 1:
            report.violate(f"attachment {media} has {count} rows in xact_attachments")
    for trace_id in sorted(set(accepted_trace_ids)):
        report.events += 1
        instance = event_instances.get(trace_id)
        if instance is None:
            report.violate(f"event {trace_id}: no orchestration")
            continue
        if instance.runtime_status != "Completed":
            report.violate(
                f"event {trace_id}: orchestration {instance.instance_id} is {instance.runtime_status}"
            )
            continue
        outcome = _output(instance.output)
        if outcome.get("status") == "dead_lettered":
            if f"xact_enrich:{trace_id}" not in letters:
                report.violate(f"event {trace_id}: enrichment failed but has no dead letter")
            continue
        if outcome.get("status") == "terminated":  # a plugin ended the pipeline for this event
            continue
        for media in sorted({media_id(trace_id, url) for url in instance.input.get("attachments", [])}):
            report.attachments += 1
            in_uploaded, status = media in uploaded_counts, failed.get(media)
            if in_uploaded and status is not None:
                report.violate(f"attachment {media} of {trace_id} is both uploaded and failed ({status})")
            elif not in_uploaded and status is None:
                report.violate(f"attachment {media} of {trace_id} is in neither attachments table")
            elif status in DEAD_LETTERED_STATUSES and f"xact_transfer:{media}" not in letters:
                report.violate(f"attachment {media} of {trace_id} failed ({status}) but has no dead letter")
    return report


def _output(output: Any) -> dict[str, Any]:
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return {}
    return output if isinstance(output, dict) else {}
