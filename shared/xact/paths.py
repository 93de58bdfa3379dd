"""Where an XACT attachment lands: deterministic, so re-uploads are idempotent.

``{status_subtype}/{assignment_id}/{trace_id}/{file name}``, where the file name is the URL's
(:func:`shared.transfer.filetypes.file_name_of`) prefixed by the assignment id, with ``FNOL``
after it for first notices of loss and the estimate version (or ``unknown``) for estimate
packages. The rule is described in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.transfer.filetypes import file_name_of

FNOL = "firstNoticeOfLossReceived"
ESTIMATE_PACKAGE = "estimatePackageReceived"


@dataclass(frozen=True, slots=True)
class AttachmentTarget:
    blob_path: str
    file_name: str
    file_type: str


def attachment_target(
    *, status_subtype: str, assignment_id: str, trace_id: str, estimate_version: str | None, url: str
) -> AttachmentTarget:
    """Relative blob path ``{subtype}/{assignment}/{trace}/{filename}`` with the per-subtype file name."""
    source = file_name_of(url)
    if status_subtype == FNOL:
        stem = f"{assignment_id}_FNOL_{source.stem}"
    elif status_subtype == ESTIMATE_PACKAGE:
        stem = f"{assignment_id}_{estimate_version or 'unknown'}_{source.stem}"
    else:
        stem = f"{assignment_id}_{source.stem}"
    file_name = f"{stem}.{source.extension}" if source.extension else stem
    return AttachmentTarget(
        blob_path=f"{status_subtype}/{assignment_id}/{trace_id}/{file_name}",
        file_name=file_name,
        file_type=source.file_type,
    )
