from __future__ import annotations

import pytest

from shared.redact import redact_text, redact_url, strip_query

pytestmark = pytest.mark.unit

S3 = (
    "https://bucket.s3.us-west-2.amazonaws.com/exports/A1/estimate.pdf"
    "?X-Amz-Date=20260214T150405Z&X-Amz-Expires=604800&X-Amz-Credential=AKIA123&X-Amz-Signature=abcdef"
)


def test_presigned_signature_and_credential_are_masked() -> None:
    redacted = redact_url(S3)
    assert "abcdef" not in redacted
    assert "AKIA123" not in redacted
    assert "X-Amz-Date=20260214T150405Z" in redacted


def test_sas_token_masked_and_userinfo_removed() -> None:
    redacted = redact_url("https://user:pw@acct.blob.core.windows.net/c/b?sv=2024&sig=SECRET&sp=r")
    assert "SECRET" not in redacted
    assert "pw" not in redacted
    assert redacted.startswith("https://REDACTED@acct.blob.core.windows.net/c/b?")


def test_free_text_urls_and_keys_masked() -> None:
    text = f"GET {S3} failed; AccountKey=abc123== ; Authorization: Bearer eyJtoken"
    redacted = redact_text(text)
    assert "abcdef" not in redacted
    assert "abc123" not in redacted
    assert "eyJtoken" not in redacted


def test_strip_query_keeps_the_stable_identity() -> None:
    assert strip_query(S3) == "https://bucket.s3.us-west-2.amazonaws.com/exports/A1/estimate.pdf"
