"""Where a ClaimX media file lands, and which file type it is.

Path: ``{project_id}/media/{media_id}_{name}`` under ``CLAIMX_ATTACHMENTS_URI``. The media id
makes two media with one name distinct; the name is ``mediaName`` (or ``media_{media_id}``), its
last path component only, every character outside ``[A-Za-z0-9._-]`` replaced by ``_``, leading
dots removed, at most :data:`MAX_NAME_CHARS` characters (the extension kept).

File type: the extension of the link's path, else of its ``filename``/``file``/``name`` query
parameter, else of ``mediaName``; it must be an allowed one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.transfer.filetypes import ALLOWED_EXTENSIONS, extension_of

MAX_NAME_CHARS = 150
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DIGITS = re.compile(r"^[0-9]{1,30}$")


@dataclass(frozen=True, slots=True)
class MediaTarget:
    blob_path: str
    file_name: str
    extension: str

    @property
    def file_type(self) -> str:
        return self.extension.upper()


def safe_name(media_name: str | None, media_id: str) -> str:
    name = (media_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).lstrip(".")
    if not name.strip("_"):
        name = f"media_{media_id}"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = f"{stem[: MAX_NAME_CHARS - len(extension) - 1]}.{extension}"
        else:
            name = name[:MAX_NAME_CHARS]
    return name


def media_extension(link: str, media_name: str | None) -> str:
    """The allowed extension of a media file; none or a disallowed one is PERMANENT."""
    extension = extension_of(link)
    if extension is None and media_name and "." in media_name:
        extension = media_name.rsplit(".", 1)[1].lower() or None
    if extension is None:
        raise ClassifiedError(
            Failure.of(ErrorCategory.PERMANENT, "no file extension in the link or the media name")
        )
    if extension not in ALLOWED_EXTENSIONS:
        raise ClassifiedError(
            Failure.of(ErrorCategory.PERMANENT, f"file extension {extension[:20]!r} is not allowed")
        )
    return extension


def media_target(project_id: str, media_id: str, media_name: str | None, link: str) -> MediaTarget:
    """The file's place and type; ids that are not plain digits cannot name a folder (PERMANENT)."""
    for label, value in (("project id", project_id), ("media id", media_id)):
        if not _DIGITS.match(value):
            raise ClassifiedError(
                Failure.of(ErrorCategory.PERMANENT, f"{label} {value[:40]!r} is not numeric")
            )
    extension = media_extension(link, media_name)
    name = f"{media_id}_{safe_name(media_name, media_id)}"
    return MediaTarget(blob_path=f"{project_id}/media/{name}", file_name=name, extension=extension)
