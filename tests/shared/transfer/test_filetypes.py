from __future__ import annotations

import pytest

from shared.errors import ClassifiedError, ErrorCategory
from shared.transfer.filetypes import (
    ALLOWED_EXTENSIONS,
    EXTENSION_CONTENT_TYPES,
    check_content_type,
    extension_of,
    file_name_of,
    require_allowed_extension,
    stored_content_type,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "extension", "kind"),
    [
        ("https://h/a/b/Estimate.PDF", "pdf", "PDF"),
        ("https://h/a/b/photo.jpeg?X-Amz-Signature=x", "jpeg", "JPEG"),
        ("https://h/a/archive.tar.gz", "gz", "GZ"),
        ("https://h/download?filename=report.docx", "docx", "DOCX"),
        ("https://h/download?File=scan.tif", "tif", "TIF"),
        ("https://h/download?name=x.csv", "csv", "CSV"),
        ("https://h/a/b/noext", None, "UNKNOWN"),
        ("https://h/", None, "UNKNOWN"),
        ("https://h/a/my%20file.pdf", "pdf", "PDF"),
    ],
)
def test_extension_and_file_type(url: str, extension: str | None, kind: str) -> None:
    assert extension_of(url) == extension
    assert file_name_of(url).file_type == kind


def test_allowlist_of_extensions() -> None:
    assert {
        "pdf", "xml", "txt", "csv", "json", "html", "htm", "xls", "xlsx", "doc", "docx", "esx",
        "jpg", "jpeg", "png", "gif", "bmp", "tiff", "tif", "webp", "mov", "mp4",
    } == ALLOWED_EXTENSIONS  # fmt: skip


@pytest.mark.parametrize("url", ["https://h/a/noext", "https://h/a/virus.exe", "https://h/a/b.pdf.sh"])
def test_missing_or_disallowed_extension_is_permanent(url: str) -> None:
    with pytest.raises(ClassifiedError) as caught:
        require_allowed_extension(url)
    assert caught.value.failure.category is ErrorCategory.PERMANENT


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("application/octet-stream", "pdf"),
        ("binary/octet-stream", "docx"),
        ("Application/Octet-Stream; charset=binary", "mp4"),
        (None, "pdf"),
        ("application/pdf", "pdf"),
        ("text/xml; charset=utf-8", "xml"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
        ("text/csv", "csv"),
        ("application/json", "json"),
        ("text/html; charset=utf-8", "html"),
        ("text/html", "htm"),
        ("application/zip", "esx"),
        ("image/jpeg", "jpg"),
        ("video/quicktime", "mov"),
    ],
)
def test_accepted_content_types(content_type: str | None, extension: str) -> None:
    check_content_type(content_type, extension)


def test_every_extension_accepts_its_natural_types() -> None:
    for extension, types in EXTENSION_CONTENT_TYPES.items():
        for content_type in types:
            check_content_type(content_type, extension)


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("application/x-msdownload", "pdf"),
        ("image/png", "pdf"),
        ("text/html", "pdf"),
        ("application/pdf", "jpg"),
    ],
)
def test_disallowed_or_mismatched_type_is_transient(content_type: str, extension: str) -> None:
    with pytest.raises(ClassifiedError) as caught:
        check_content_type(content_type, extension)
    assert caught.value.failure.category is ErrorCategory.TRANSIENT


def test_stored_type_prefers_specific_source_type() -> None:
    assert stored_content_type("binary/octet-stream", "pdf") == "application/pdf"
    assert stored_content_type(None, "docx").startswith("application/vnd.openxmlformats")
    assert stored_content_type("text/xml; charset=utf-8", "xml") == "text/xml"
