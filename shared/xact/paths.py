"""Where an XACT attachment lands (reference §2.6): deterministic, so re-uploads are idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from shared.transfer.filetypes import UNKNOWN_FILE_TYPE

FNOL = "firstNoticeOfLossReceived"
ESTIMATE_PACKAGE = "estimatePackageReceived"


@dataclass(frozen=True, slots=True)
class AttachmentTarget:
    blob_path: str
    file_name: str
    file_type: str


def split_file_name(url: str) -> tuple[str, str | None]:
    """(name, lower-case extension or None) of the URL path's last segment."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if "." not in segment:
        return (segment or "unknown"), None
    name, extension = segment.rsplit(".", 1)
    return name, (extension.lower() or None)


def attachment_target(
    *, status_subtype: str, assignment_id: str, trace_id: str, estimate_version: str | None, url: str
) -> AttachmentTarget:
    """Relative blob path ``{subtype}/{assignment}/{trace}/{filename}`` with the per-subtype file name."""
    name, extension = split_file_name(url)
    if status_subtype == FNOL:
        stem = f"{assignment_id}_FNOL_{name}"
    elif status_subtype == ESTIMATE_PACKAGE:
        stem = f"{assignment_id}_{estimate_version or 'unknown'}_{name}"
    else:
        stem = f"{assignment_id}_{name}"
    file_name = f"{stem}.{extension}" if extension else stem
    file_type = extension.upper() if extension else UNKNOWN_FILE_TYPE
    return AttachmentTarget(
        blob_path=f"{status_subtype}/{assignment_id}/{trace_id}/{file_name}",
        file_name=file_name,
        file_type=file_type,
    )
