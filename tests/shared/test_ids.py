from __future__ import annotations

import pytest

from shared.ids import EVENT_ID_NAMESPACE, MEDIA_ID_NAMESPACE, event_id, media_id, status_subtype

pytestmark = pytest.mark.unit

TRACE = "3f2b9c1e-7a44-4d0b-9e61-2c5d8a9b1f00"
URL = "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/exports/A1B2C3/estimate.pdf"


def test_reference_vectors() -> None:
    assert str(EVENT_ID_NAMESPACE) == "b8ec3745-17c7-5a5a-afbd-9b81a1a71824"
    assert event_id(TRACE) == "28706bf1-1a96-511d-a54f-5fb42e9ea3be"
    assert str(MEDIA_ID_NAMESPACE) == "6a9dbf19-e709-52a7-9659-e503e4faceb8"
    assert media_id(TRACE, URL) == "1f4f24e8-815c-5601-97dc-ede9916bb622"


def test_media_id_ignores_the_rotating_signature() -> None:
    signed = f"{URL}?X-Amz-Date=20260214T150405Z&X-Amz-Expires=604800&X-Amz-Signature=abc"
    resigned = f"{URL}?X-Amz-Date=20260215T000000Z&X-Amz-Expires=604800&X-Amz-Signature=def"
    assert media_id(TRACE, signed) == media_id(TRACE, resigned) == "1f4f24e8-815c-5601-97dc-ede9916bb622"
    assert media_id("other-trace", URL) != media_id(TRACE, URL)


@pytest.mark.parametrize(
    ("event_type", "subtype"),
    [
        ("verisk.claims.property.xn.documentsReceived", "documentsReceived"),
        ("verisk.claims.property.xn.firstNoticeOfLossReceived", "firstNoticeOfLossReceived"),
        ("verisk.claims.property.xn.status.delivered", "delivered"),
        ("plain", "plain"),
    ],
)
def test_status_subtype_is_the_last_dot_segment(event_type: str, subtype: str) -> None:
    assert status_subtype(event_type) == subtype
