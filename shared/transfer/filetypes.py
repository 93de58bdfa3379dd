"""File-type rules (docs/architecture.md, sections 6 and 7): the one reading of a URL's file name,
the extension allowlist before the download, and the Content-Type allowlist and its agreement with
the extension after the response headers arrive.

``application/octet-stream`` / ``binary/octet-stream`` (what S3 often answers) and the natural types
of every allowed extension (docx, xlsx, csv, json, html, esx...) are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.redact import redact_url

UNKNOWN_FILE_TYPE = "UNKNOWN"
GENERIC_CONTENT_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
NAME_QUERY_KEYS = ("filename", "file", "name")

# Natural Content-Types per allowed extension; the first one is what we record for the file.
EXTENSION_CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "pdf": ("application/pdf", "application/x-pdf"),
    "xml": ("application/xml", "text/xml"),
    "txt": ("text/plain",),
    "csv": ("text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"),
    "json": ("application/json", "text/json", "text/plain"),
    "html": ("text/html",),
    "htm": ("text/html",),
    "xls": ("application/vnd.ms-excel",),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",),
    "doc": ("application/msword",),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
    "esx": ("application/zip", "application/x-zip-compressed", "application/x-esx"),
    "jpg": ("image/jpeg", "image/pjpeg"),
    "jpeg": ("image/jpeg", "image/pjpeg"),
    "png": ("image/png",),
    "gif": ("image/gif",),
    "bmp": ("image/bmp", "image/x-ms-bmp"),
    "tiff": ("image/tiff",),
    "tif": ("image/tiff",),
    "webp": ("image/webp",),
    "mov": ("video/quicktime",),
    "mp4": ("video/mp4",),
}
ALLOWED_EXTENSIONS = frozenset(EXTENSION_CONTENT_TYPES)
ALLOWED_CONTENT_TYPES = (
    frozenset(t for types in EXTENSION_CONTENT_TYPES.values() for t in types) | GENERIC_CONTENT_TYPES
)


@dataclass(frozen=True, slots=True)
class FileName:
    """The file name a URL names: ``stem`` and the lower-case ``extension`` (``None`` without one)."""

    stem: str
    extension: str | None

    @property
    def name(self) -> str:
        return f"{self.stem}.{self.extension}" if self.extension else self.stem

    @property
    def file_type(self) -> str:
        """Upper-cased extension (``PDF``) or ``UNKNOWN``: the ``file_type`` column."""
        return self.extension.upper() if self.extension else UNKNOWN_FILE_TYPE


def _split(segment: str) -> FileName:
    if "." not in segment:
        return FileName(segment, None)
    stem, extension = segment.rsplit(".", 1)
    return FileName(stem, extension.lower() or None)


def file_name_of(url: str) -> FileName:
    """The one reading of a URL's file name. It is the last segment of the URL's path,
    percent-decoded; when that has no extension, the first ``filename``, ``file`` or ``name``
    query value that has one (download links often name the file only there); else the path
    segment as it is (``unknown`` when empty). The extension is the text after the last dot."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return FileName("unknown", None)
    from_path = _split(unquote(parts.path).rsplit("/", 1)[-1])
    if from_path.extension is not None:
        return from_path
    query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    for key in NAME_QUERY_KEYS:
        from_query = _split(unquote(query.get(key, "")).rsplit("/", 1)[-1])
        if from_query.extension is not None:
            return from_query
    return from_path if from_path.stem else FileName("unknown", None)


def extension_of(url: str) -> str | None:
    """Lower-case extension of the file name :func:`file_name_of` reads."""
    return file_name_of(url).extension


def require_allowed_extension(url: str) -> str:
    """The allowed extension of ``url``; a missing or disallowed one is PERMANENT."""
    extension = extension_of(url)
    if extension is None:
        raise ClassifiedError(
            Failure.of(ErrorCategory.PERMANENT, f"no file extension in URL: {redact_url(url)}")
        )
    if extension not in ALLOWED_EXTENSIONS:
        raise ClassifiedError(
            Failure.of(
                ErrorCategory.PERMANENT, f"file extension {extension!r} is not allowed: {redact_url(url)}"
            )
        )
    return extension


def media_type(content_type: str | None) -> str | None:
    """``text/plain; charset=utf-8`` → ``text/plain``; empty → ``None``."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def check_content_type(content_type: str | None, extension: str) -> None:
    """Raise TRANSIENT when the answer's type is not allowed or not the extension's.

    A missing Content-Type and the generic octet-stream types are always accepted.
    """
    value = media_type(content_type)
    if value is None or value in GENERIC_CONTENT_TYPES:
        return
    if value not in ALLOWED_CONTENT_TYPES:
        raise ClassifiedError(Failure.of(ErrorCategory.TRANSIENT, f"Content-Type {value!r} is not allowed"))
    expected = EXTENSION_CONTENT_TYPES.get(extension)
    if expected is not None and value not in expected:
        raise ClassifiedError(
            Failure.of(
                ErrorCategory.TRANSIENT, f"Content-Type {value!r} does not match extension {extension!r}"
            )
        )


def natural_content_type(extension: str | None) -> str:
    """The Content-Type we record for a file of this extension (octet-stream when unknown)."""
    types = EXTENSION_CONTENT_TYPES.get((extension or "").lower())
    return types[0] if types else "application/octet-stream"


def stored_content_type(content_type: str | None, extension: str) -> str:
    """What the lake file carries: the source's specific type, or the extension's for generic ones."""
    value = media_type(content_type)
    if value is None or value in GENERIC_CONTENT_TYPES:
        return natural_content_type(extension)
    return value
