from __future__ import annotations

import logging

import pytest

from shared.logs import install_redaction

pytestmark = pytest.mark.unit


def test_log_messages_are_redacted_at_creation(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    install_redaction()  # idempotent
    url = "https://acct.blob.core.windows.net/c/f.pdf?sv=2024&sig=SASSIGNATURE"
    with caplog.at_level(logging.INFO):
        logging.getLogger("azure.any.sdk").info("uploading to %s with AccountKey=%s", url, "c2VjcmV0")
        logging.getLogger("x").info("broken %d format", "not-a-number")
    first, second = caplog.records
    assert "SASSIGNATURE" not in first.getMessage()
    assert "c2VjcmV0" not in first.getMessage()
    assert "sig=REDACTED" in first.getMessage()
    assert second.getMessage() == "broken %d format"
