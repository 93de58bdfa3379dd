"""Where an XACT attachment lands (docs/architecture.md, section 6): a deterministic path, so
re-uploads are idempotent, that is safe and unique whatever the event holds.

``{status_subtype}/{assignment_id}/{trace_id}/{file name}``, where the file name is the URL's
(:func:`shared.transfer.filetypes.file_name_of`) prefixed by the assignment id, with ``FNOL``
after it for first notices of loss and the estimate version (or ``unknown``) for estimate
packages.

Every id and name is made a safe path segment first (:func:`safe_segment`): no separator, no
``..``, no control character, bounded length. Attachments of one event that would share a path
(``photo.jpg`` in two folders) each get a short suffix of their media id, so the result depends
on the event alone, never on timing.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from shared.transfer.filetypes import file_name_of

FNOL = "firstNoticeOfLossReceived"
ESTIMATE_PACKAGE = "estimatePackageReceived"
MAX_ID_BYTES = 128  # a status subtype, assignment id, trace id or estimate version in a path
MAX_FILE_NAME_BYTES = 200  # ADLS Gen2 allows 255 per path segment
_HASH_CHARS = 8
# Characters that separate, escape or are refused somewhere a file travels (URLs, Windows, shells).
_UNSAFE_CHARACTERS = frozenset('/\\<>:"|?*#%')
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_DOT_RUN = re.compile(r"\.{2,}")


class UnsafeName(ValueError):
    """An id or name that cannot be made a path segment (nothing usable is left)."""


@dataclass(frozen=True, slots=True)
class AttachmentTarget:
    blob_path: str
    file_name: str
    file_type: str


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:_HASH_CHARS]


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    encoded = text.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def safe_segment(value: str, *, what: str, limit: int = MAX_ID_BYTES) -> str:
    """``value`` as one path segment. Separators, characters that are unsafe in a path, control
    and format characters become ``_``; runs of dots become ``_``; leading and trailing spaces and
    dots go. A value that had to change, or is longer than ``limit`` UTF-8 bytes, gets ``-`` and
    eight hex characters of its SHA-256, so two values never meet in one segment by being
    cleaned alike. Raises :class:`UnsafeName` when nothing usable is left."""
    cleaned = "".join(
        "_" if ch in _UNSAFE_CHARACTERS or unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch
        for ch in value
    )
    cleaned = _DOT_RUN.sub("_", cleaned).strip(" .\t")
    if not cleaned.strip("_"):
        raise UnsafeName(f"{what} {value[:40]!r} leaves no usable path segment")
    if cleaned == value and len(value.encode("utf-8")) <= limit:
        return value
    return f"{_truncate(cleaned, limit - _HASH_CHARS - 1)}-{_hash(value)}"


def attachment_target(
    *,
    status_subtype: str,
    assignment_id: str,
    trace_id: str,
    estimate_version: str | None,
    url: str,
    suffix: str = "",
) -> AttachmentTarget:
    """Relative blob path ``{subtype}/{assignment}/{trace}/{file name}``, every segment safe;
    ``suffix`` goes between the file's stem and its extension. Raises :class:`UnsafeName`."""
    subtype = safe_segment(status_subtype, what="status subtype")
    assignment = safe_segment(assignment_id, what="assignment id")
    trace = safe_segment(trace_id, what="trace id")
    source = file_name_of(url)
    if status_subtype == FNOL:
        prefix = f"{assignment}_FNOL_"
    elif status_subtype == ESTIMATE_PACKAGE:
        version = safe_segment(estimate_version, what="estimate version") if estimate_version else "unknown"
        prefix = f"{assignment}_{version}_"
    else:
        prefix = f"{assignment}_"
    extension = f".{source.extension}" if source.extension else ""
    room = MAX_FILE_NAME_BYTES - len(extension.encode("utf-8")) - len(suffix)
    stem = safe_segment(f"{prefix}{source.stem}", what="file name", limit=room)
    file_name = safe_segment(f"{stem}{suffix}{extension}", what="file name", limit=MAX_FILE_NAME_BYTES)
    return AttachmentTarget(
        blob_path=f"{subtype}/{assignment}/{trace}/{file_name}",
        file_name=file_name,
        file_type=source.file_type,
    )


def attachment_targets(
    *,
    status_subtype: str,
    assignment_id: str,
    trace_id: str,
    estimate_version: str | None,
    attachments: Sequence[tuple[str, str]],
) -> dict[str, AttachmentTarget | UnsafeName]:
    """Targets for the distinct attachments of one event, ``(media_id, url)`` pairs, by media id.

    Attachments whose paths would meet (compared case-insensitively, as some file systems do)
    each get ``-`` and the first eight characters of their media id; if that still meets
    another path (a name crafted to look suffixed), the whole media id; what still meets after
    that is refused with an :class:`UnsafeName` saying so."""
    target_of = partial(
        attachment_target,
        status_subtype=status_subtype,
        assignment_id=assignment_id,
        trace_id=trace_id,
        estimate_version=estimate_version,
    )
    targets: dict[str, AttachmentTarget | UnsafeName] = {}
    for media, url in attachments:
        try:
            targets[media] = target_of(url=url)
        except UnsafeName as exc:
            targets[media] = exc
    urls = dict(attachments)
    for width in (_HASH_CHARS, None):  # then the whole media id
        for group in _collisions(targets):
            for media in group:
                try:
                    targets[media] = target_of(url=urls[media], suffix=f"-{media[:width]}")
                except UnsafeName as exc:
                    targets[media] = exc
    for group in _collisions(targets):
        for media in group[1:]:
            targets[media] = UnsafeName("its file path meets another attachment's of this event")
    return targets


def _collisions(targets: dict[str, AttachmentTarget | UnsafeName]) -> list[list[str]]:
    """Groups of media ids whose paths meet, each in media id order."""
    by_path: dict[str, list[str]] = defaultdict(list)
    for media, target in targets.items():
        if isinstance(target, AttachmentTarget):
            by_path[target.blob_path.casefold()].append(media)
    return [sorted(group) for group in by_path.values() if len(group) > 1]
