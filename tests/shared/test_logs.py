from __future__ import annotations

import logging
import traceback

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


def test_extras_args_and_dict_reprs_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    url = "https://bucket.s3.amazonaws.com/f.pdf?X-Amz-Signature=EXTRASIG&X-Amz-Date=20260214T150405Z"
    with caplog.at_level(logging.INFO):
        logging.getLogger("shared.any").info(
            "headers %s",
            {"Authorization": "Bearer DICTTOKEN", "x": 1},
            extra={"download_url": url, "context": {"password": "EXTRAPW", "n": 2}, "count": 3},
        )
    (record,) = caplog.records
    rendered = logging.Formatter("%(message)s %(download_url)s %(context)s").format(record)
    for secret in ("EXTRASIG", "DICTTOKEN", "EXTRAPW"):
        assert secret not in rendered
    assert record.count == 3  # type: ignore[attr-defined]
    assert "X-Amz-Date=20260214T150405Z" in rendered


def test_exception_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()

    def fail() -> None:
        try:
            raise ConnectionError("reset by https://acct.blob.core.windows.net/c/b?sig=CAUSESIG")
        except ConnectionError as exc:
            raise RuntimeError("upload failed with AccountKey=TRACEKEY") from exc

    with caplog.at_level(logging.ERROR):
        try:
            fail()
        except RuntimeError:
            logging.getLogger("shared.any").exception("transfer failed", stack_info=True)
    (record,) = caplog.records
    formatted = logging.Formatter().format(record)
    assert "CAUSESIG" not in formatted and "TRACEKEY" not in formatted
    assert "RuntimeError" in formatted and "ConnectionError" in formatted and "fail" in formatted
    # a handler that formats exc_info itself (OpenTelemetry does) finds no secret either
    assert record.exc_info is not None
    rebuilt = "".join(traceback.format_exception(*record.exc_info))
    assert "TRACEKEY" not in rebuilt and "RuntimeError" in rebuilt
