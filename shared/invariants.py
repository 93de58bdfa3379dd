"""The promise "nothing lost, nothing doubled", checked on what a run left behind, per domain.

Every accepted event's orchestration ended; every attachment an event names is in exactly one of
its domain's attachments table and failed-attachments table (a failed row marked ``recovered`` is the
history of an attachment uploaded when its dead letter was replayed); every attachment that failed after a
download attempt, and every event whose enrichment failed, has its dead letter. The inputs are
plain data, so a run, a test or an ops command can gather them; each domain says which attachments
an event names and what its stages are called.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True, slots=True)
class DomainRun:
    """One domain's part of a run. ``accepted_trace_ids``: events that should have an orchestration
    (valid, not skipped); ``instances`` by trace id; ``uploaded``: media ids in the attachments
    table; ``failed``: media id -> status in the failed-attachments table; ``expected_media``: the
    media ids an event names, from its trace id and orchestration input."""

    domain: str
    accepted_trace_ids: Sequence[str]
    instances: Mapping[str, EventInstance]
    uploaded: Sequence[str]
    failed: Mapping[str, str]
    expected_media: Callable[[str, Mapping[str, Any]], Iterable[str]]
    enrich_stage: str
    transfer_stage: str


def check_invariants(domains: Sequence[DomainRun], dead_letter_ids: Iterable[str]) -> InvariantReport:
    report = InvariantReport()
    letters = set(dead_letter_ids)
    for run in domains:
        _check_domain(run, letters, report)
    return report


def _check_domain(run: DomainRun, letters: set[str], report: InvariantReport) -> None:
    name = run.domain
    uploaded_counts = Counter(run.uploaded)
    for media, count in uploaded_counts.items():
        if count > 1:
            report.violate(f"{name} attachment {media} has {count} rows in its attachments table")
    for trace_id in sorted(set(run.accepted_trace_ids)):
        report.events += 1
        instance = run.instances.get(trace_id)
        if instance is None:
            report.violate(f"{name} event {trace_id}: no orchestration")
            continue
        if instance.runtime_status != "Completed":
            ended = instance.runtime_status
            report.violate(f"{name} event {trace_id}: orchestration {instance.instance_id} is {ended}")
            continue
        outcome = _output(instance.output)
        if outcome.get("status") == "dead_lettered":
            if f"{run.enrich_stage}:{trace_id}" not in letters:
                report.violate(f"{name} event {trace_id}: enrichment failed but has no dead letter")
            continue
        if outcome.get("status") == "terminated":  # a plugin ended the pipeline for this event
            continue
        for media in sorted(set(run.expected_media(trace_id, instance.input))):
            report.attachments += 1
            what = f"{name} attachment {media} of {trace_id}"
            in_uploaded, status = media in uploaded_counts, run.failed.get(media)
            recovered = status == AttachmentStatus.RECOVERED  # failed, then uploaded on a replay
            if in_uploaded and status is not None and not recovered:
                report.violate(f"{what} is both uploaded and failed ({status})")
            elif not in_uploaded and (status is None or recovered):
                report.violate(f"{what} is in neither attachments table")
            elif status in DEAD_LETTERED_STATUSES and f"{run.transfer_stage}:{media}" not in letters:
                report.violate(f"{what} failed ({status}) but has no dead letter")


def _output(output: Any) -> dict[str, Any]:
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return {}
    return output if isinstance(output, dict) else {}
