"""The run invariants: each kind of loss or doubling is reported; a clean run passes; each domain
says which attachments its events name."""

from __future__ import annotations

from typing import Any

import pytest

from shared.claimx import invariants as claimx
from shared.ids import media_id
from shared.invariants import DomainRun, EventInstance, InvariantReport, check_invariants
from shared.xact import invariants as xact

pytestmark = pytest.mark.unit

A, B = "https://h/a.pdf?sig=1", "https://h/b.pdf"


def instance(trace: str, *, status: str = "Completed", urls: list[str], output: Any = None) -> EventInstance:
    return EventInstance(f"xact-{trace}", status, {"attachments": urls}, output or {"status": "completed"})


def run(
    instances: dict[str, EventInstance],
    *,
    uploaded: list[str] | None = None,
    failed: dict[str, str] | None = None,
    letters: list[str] | None = None,
    accepted: list[str] | None = None,
) -> InvariantReport:
    domain = DomainRun(
        "xact",
        accepted if accepted is not None else list(instances),
        instances,
        uploaded or [],
        failed or {},
        xact.expected_media,
        "xact_enrich",
        "xact_transfer",
    )
    return check_invariants([domain], letters or [])


def check(
    instances: dict[str, EventInstance],
    *,
    uploaded: list[str] | None = None,
    failed: dict[str, str] | None = None,
    letters: list[str] | None = None,
    accepted: list[str] | None = None,
) -> list[str]:
    report = run(instances, uploaded=uploaded, failed=failed, letters=letters, accepted=accepted)
    assert report.ok == (report.violations == [])
    return report.violations


def test_a_clean_run_holds() -> None:
    ma, mb = media_id("t1", A), media_id("t1", B)
    instances = {"t1": instance("t1", urls=[A, A.replace("sig=1", "sig=2"), B])}  # A twice, re-signed
    report = run(instances, uploaded=[ma], failed={mb: "exhausted"}, letters=[f"xact_transfer:{mb}"])
    assert report.to_dict() == {"ok": True, "events_checked": 1, "attachments_checked": 2, "violations": []}


def test_a_rejected_attachment_needs_no_dead_letter() -> None:
    assert check({"t1": instance("t1", urls=[B])}, failed={media_id("t1", B): "rejected"}) == []


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({"accepted": ["t9"]}, "event t9: no orchestration"),
        ({"status": "Running"}, "is Running"),
        ({"uploaded": []}, "is in neither attachments table"),
        ({"uploaded": ["A"], "failed": {"A": "exhausted"}, "letters": ["A"]}, "is both uploaded and failed"),
        ({"uploaded": ["A", "A"]}, "has 2 rows in its attachments table"),
        (
            {"uploaded": [], "failed": {"A": "failed_permanent"}},
            "failed (failed_permanent) but has no dead letter",
        ),
        ({"output": {"status": "dead_lettered"}, "uploaded": []}, "enrichment failed but has no dead letter"),
    ],
)
def test_each_kind_of_loss_or_doubling_is_reported(setup: dict[str, Any], expected: str) -> None:
    ma = media_id("t1", A)

    def media(values: list[str]) -> list[str]:
        return [ma if v == "A" else v for v in values]

    violations = check(
        {"t1": instance("t1", status=setup.get("status", "Completed"), urls=[A], output=setup.get("output"))},
        uploaded=media(setup.get("uploaded", ["A"])),
        failed={ma: setup["failed"]["A"]} if "failed" in setup else {},
        letters=[f"xact_transfer:{ma}" for _ in setup.get("letters", [])],
        accepted=setup.get("accepted"),
    )
    assert len(violations) == 1 and expected in violations[0], violations


def test_an_event_ended_by_a_plugin_has_no_attachments_to_account_for() -> None:
    assert check({"t1": instance("t1", urls=[A], output='{"status": "terminated"}')}) == []


def test_claimx_file_added_events_name_their_media_and_other_types_none() -> None:
    assert claimx.expected_media("t", {"event_type": "PROJECT_FILE_ADDED", "media_id": "88"}) == {"88"}
    assert claimx.expected_media("t", {"event_type": "PROJECT_CREATED", "media_id": None}) == set()
    missing = DomainRun(
        "claimx",
        ["t"],
        {"t": instance("t", urls=[])},
        [],
        {},
        lambda trace, _: {"88"},
        "claimx_enrich",
        "claimx_download",
    )
    [violation] = check_invariants([missing], []).violations
    assert violation == "claimx attachment 88 of t is in neither attachments table"


def test_a_failed_row_marked_recovered_goes_with_an_upload_only() -> None:
    ma = media_id("t1", A)
    instances = {"t1": instance("t1", urls=[A])}
    assert check(instances, uploaded=[ma], failed={ma: "recovered"}) == []
    [violation] = check(instances, uploaded=[], failed={ma: "recovered"})
    assert "is in neither attachments table" in violation
