"""File-type rules (reference §5.12, with the fixes): extension allowlist before the download,
Content-Type allowlist and extension agreement after the response headers arrive.

Fixes over the seed: ``application/octet-stream`` / ``binary/octet-stream`` (what S3 often
answers) and the natural types of every allowed extension (docx, xlsx, csv, json, html, esx…)
are accepted, so valid files no longer end in the dead-letter table after four retries.
"""

from __future__ import annotations

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


def _extension_of_name(name: str) -> str | None:
    segment = unquote(name).rsplit("/", 1)[-1]
    if "." not in segment:
        return None
    return segment.rsplit(".", 1)[1].lower() or None


def extension_of(url: str) -> str | None:
    """Lower-case extension of the URL path's last segment, else of a ``filename``/``file``/``name`` value."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    found = _extension_of_name(parts.path)
    if found is not None:
        return found
    query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    for key in NAME_QUERY_KEYS:
        if query.get(key):
            found = _extension_of_name(query[key])
            if found is not None:
                return found
    return None


def file_type(url: str) -> str:
    """Upper-cased extension (``PDF``) or ``UNKNOWN`` (reference §2.6)."""
    extension = extension_of(url)
    return extension.upper() if extension else UNKNOWN_FILE_TYPE


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
    """Raise TRANSIENT (seed category) when the answer's type is not allowed or not the extension's.

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
