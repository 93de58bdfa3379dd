from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.transfer.presigned import PresignedKind, parse_presigned

pytestmark = pytest.mark.unit

SIGNED = datetime(2026, 2, 14, 15, 0, 0, tzinfo=UTC)
S3_URL = (
    "https://usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com/a/b.pdf"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260214T150000Z&X-Amz-Expires=3600&X-Amz-Signature=abc"
)


def test_s3_expiry() -> None:
    info = parse_presigned(S3_URL)
    assert info is not None and info.kind is PresignedKind.S3
    assert info.signed_at == SIGNED
    assert info.expires_at == SIGNED + timedelta(hours=1)
    assert info.ttl == timedelta(hours=1)
    assert not info.is_expired(SIGNED + timedelta(minutes=59))
    assert info.is_expired(SIGNED + timedelta(hours=1))  # at the expiry instant: expired
    assert info.expires_within(300, SIGNED + timedelta(minutes=56))
    assert not info.expires_within(300, SIGNED + timedelta(minutes=54))


def test_s3_parameter_names_are_case_insensitive() -> None:
    info = parse_presigned("https://h/b.pdf?x-amz-date=20260214T150000Z&X-AMZ-EXPIRES=60")
    assert info is not None and info.expires_at == SIGNED + timedelta(seconds=60)


def test_naive_now_is_utc() -> None:
    info = parse_presigned(S3_URL)
    assert info is not None and info.is_expired(datetime(2026, 2, 14, 16, 0, 0))


def test_claimx_milliseconds() -> None:
    system_ms = int(SIGNED.timestamp() * 1000)
    url = f"https://www.claimxperience.com/service/media/1?systemDate={system_ms}&expires=600000&sig=x"
    info = parse_presigned(url)
    assert info is not None and info.kind is PresignedKind.CLAIMX
    assert info.signed_at == SIGNED
    assert info.expires_at == SIGNED + timedelta(minutes=10)
    assert info.is_expired(SIGNED + timedelta(minutes=10, seconds=1))


@pytest.mark.parametrize(
    "url",
    [
        "https://h/b.pdf?X-Amz-Date=20260214T150000Z",
        "https://h/b.pdf?X-Amz-Date=garbage&X-Amz-Expires=60",
        "https://www.claimxperience.com/m?systemDate=abc&expires=1",
    ],
)
def test_unparseable_is_presigned_not_expired(url: str) -> None:
    info = parse_presigned(url)
    assert info is not None and info.parse_error
    assert info.expires_at is None
    assert not info.is_expired(datetime(2100, 1, 1, tzinfo=UTC))


def test_not_presigned() -> None:
    assert parse_presigned("https://h/b.pdf?size=10") is None
    assert parse_presigned("https://h/b.pdf") is None
