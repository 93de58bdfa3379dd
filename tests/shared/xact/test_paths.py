from __future__ import annotations

import pytest

from shared.xact.paths import attachment_target

pytestmark = pytest.mark.unit

TRACE = "3f2b9c1e-7a44-4d0b-9e61-2c5d8a9b1f00"
BASE = "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/exports/A1B2C3"


@pytest.mark.parametrize(
    ("subtype", "version", "url", "path", "file_type"),
    [
        (
            "documentsReceived",
            None,
            f"{BASE}/estimate.pdf?X-Amz-Signature=abc",
            f"documentsReceived/A1B2C3/{TRACE}/A1B2C3_estimate.pdf",
            "PDF",
        ),
        (
            "firstNoticeOfLossReceived",
            None,
            f"{BASE}/notice.XML",
            f"firstNoticeOfLossReceived/A1B2C3/{TRACE}/A1B2C3_FNOL_notice.xml",
            "XML",
        ),
        (
            "estimatePackageReceived",
            "2",
            f"{BASE}/est.pdf",
            f"estimatePackageReceived/A1B2C3/{TRACE}/A1B2C3_2_est.pdf",
            "PDF",
        ),
        (
            "estimatePackageReceived",
            None,
            f"{BASE}/est.pdf",
            f"estimatePackageReceived/A1B2C3/{TRACE}/A1B2C3_unknown_est.pdf",
            "PDF",
        ),
        (
            "inspection",
            "7",
            f"{BASE}/photo.final.JPG",
            f"inspection/A1B2C3/{TRACE}/A1B2C3_photo.final.jpg",
            "JPG",
        ),
        (
            "documentsReceived",
            None,
            f"{BASE}/README",
            f"documentsReceived/A1B2C3/{TRACE}/A1B2C3_README",
            "UNKNOWN",
        ),
        (
            "documentsReceived",
            None,
            f"{BASE}/",
            f"documentsReceived/A1B2C3/{TRACE}/A1B2C3_unknown",
            "UNKNOWN",
        ),
        (
            "documentsReceived",
            None,
            "https://www.claimxperience.com/download?filename=Roof%20Photo.JPEG&expires=1",
            f"documentsReceived/A1B2C3/{TRACE}/A1B2C3_Roof Photo.jpeg",
            "JPEG",
        ),
    ],
)
def test_reference_path_rules(subtype: str, version: str | None, url: str, path: str, file_type: str) -> None:
    target = attachment_target(
        status_subtype=subtype, assignment_id="A1B2C3", trace_id=TRACE, estimate_version=version, url=url
    )
    assert target.blob_path == path
    assert target.file_type == file_type
    assert target.blob_path.endswith(target.file_name)
