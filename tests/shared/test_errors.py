from __future__ import annotations

import errno

import pytest

from shared.errors import (
    ActivityError,
    ClassifiedError,
    ErrorCategory,
    Failure,
    classify_exception,
    classify_http_status,
    redacted_errors,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (302, ErrorCategory.AUTH),
        (401, ErrorCategory.AUTH),
        (429, ErrorCategory.TRANSIENT),
        (400, ErrorCategory.PERMANENT),
        (403, ErrorCategory.PERMANENT),
        (404, ErrorCategory.PERMANENT),
        (410, ErrorCategory.PERMANENT),
        (418, ErrorCategory.PERMANENT),
        (500, ErrorCategory.TRANSIENT),
        (503, ErrorCategory.TRANSIENT),
        (599, ErrorCategory.TRANSIENT),
        (200, ErrorCategory.UNKNOWN),
        (304, ErrorCategory.UNKNOWN),
    ],
)
def test_http_status_table(status: int, category: ErrorCategory) -> None:
    assert classify_http_status(status) is category


@pytest.mark.parametrize(
    ("exc", "category"),
    [
        (TimeoutError(), ErrorCategory.TRANSIENT),
        (ConnectionResetError("connection reset by peer"), ErrorCategory.TRANSIENT),
        (RuntimeError("Failed to commit transaction: conflict"), ErrorCategory.TRANSIENT),
        (RuntimeError("token expired"), ErrorCategory.AUTH),
        (RuntimeError("rate limit exceeded"), ErrorCategory.TRANSIENT),
        (RuntimeError("403 Forbidden"), ErrorCategory.PERMANENT),
        (RuntimeError("resource not found"), ErrorCategory.PERMANENT),
        (OSError(errno.ENOSPC, "disk full"), ErrorCategory.PERMANENT),
        (OSError(errno.EIO, "io"), ErrorCategory.TRANSIENT),
        (RuntimeError("something odd"), ErrorCategory.UNKNOWN),
    ],
)
def test_exception_rules(exc: BaseException, category: ErrorCategory) -> None:
    assert classify_exception(exc) is category


def test_classified_error_keeps_its_category_and_redacts() -> None:
    failure = Failure.of(ErrorCategory.PERMANENT, "GET https://h/x.pdf?X-Amz-Signature=SECRET: 404", 404)
    assert "SECRET" not in failure.message
    assert classify_exception(ClassifiedError(failure)) is ErrorCategory.PERMANENT
    assert Failure.from_dict(failure.to_dict()) == failure


def test_message_is_capped() -> None:
    assert len(Failure.of(ErrorCategory.UNKNOWN, "x" * 2000).message) == 500


def test_only_permanent_is_not_retryable() -> None:
    assert [c for c in ErrorCategory if not c.is_retryable] == [ErrorCategory.PERMANENT]


def test_unexpected_activity_errors_are_redacted_with_their_traceback() -> None:
    def fail() -> None:
        raise RuntimeError("GET https://h.example.com/f.pdf?X-Amz-Signature=TOPSECRET failed")

    with pytest.raises(ActivityError) as caught, redacted_errors():
        fail()
    text = str(caught.value)
    assert text.startswith("RuntimeError: GET https://h.example.com/f.pdf?X-Amz-Signature=REDACTED failed")
    assert "TOPSECRET" not in text
    assert "in fail" in text  # the traceback is kept, redacted
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
