"""ClaimX media download: the ``fullDownloadLink`` answers 302 to an S3 presigned URL; both hops
are checked by the URL policy, and the ClaimX credential goes to ClaimX hosts only.

A link that has expired, or expires within the transfer timeout, is refreshed through the media
endpoint before the download; a 403 or an expired S3 hop refreshes it and tries again. A 404 is
PERMANENT (dead-lettered, not refreshed). The bytes go through the shared transfer: streamed in
blocks of ``TRANSFER_BLOCK_SIZE_MB`` into a write-once file. A transfer cut off after it staged
blocks (every file above one block, so every file above 50 MB) resumes from the staged prefix
with a ``Range`` request at once, while each try makes progress, before the orchestration's
schedule takes over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from shared import metrics
from shared.claimx.api import ClaimXApi
from shared.claimx.transformers import ident
from shared.clock import utc_now
from shared.config import Settings
from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.transfer.attachment import MIB, TransferRequest, TransferResult, transfer_attachment
from shared.transfer.presigned import parse_presigned
from shared.transfer.stores import AttachmentStore, url_tag
from shared.transfer.urls import UrlPolicy

log = logging.getLogger(__name__)

MAX_REFRESHES = 2
MAX_RESUMES = 3


@dataclass(frozen=True, slots=True)
class MediaDownload:
    result: TransferResult
    refreshed: int
    resumed: int


def needs_refresh(failure: Failure) -> bool:
    """403 from either hop, or an S3 hop whose signature had already expired."""
    return failure.http_status == 403 or (
        failure.category is ErrorCategory.PERMANENT and "presigned URL expired" in failure.message
    )


async def refreshed_link(api: ClaimXApi, project_id: str, media_id: str) -> str:
    """A fresh ``fullDownloadLink`` from ``GET /export/project/{id}/media?mediaIds={id}``."""
    metrics.add("claimx.media.link_refreshes")
    for item in await api.media(project_id, [media_id]):
        if ident(item.get("mediaID") or item.get("mediaId")) == media_id:
            link = item.get("fullDownloadLink")
            if isinstance(link, str) and link.strip():
                return link.strip()
    raise ClassifiedError(
        Failure.of(ErrorCategory.PERMANENT, f"media {media_id} has no download link any more (refresh)")
    )


async def download_media(
    task: dict[str, Any],
    *,
    api: ClaimXApi,
    session: Any,
    store: AttachmentStore,
    policy: UrlPolicy,
    settings: Settings,
) -> MediaDownload:
    """Copy one media file to its path; raises :class:`ClassifiedError` when it cannot."""
    link: str = task["url"]
    refreshed = resumed = 0
    info = parse_presigned(link)
    if info is not None and info.expires_within(settings.transfer_timeout_seconds, utc_now()):
        link = await refreshed_link(api, task["project_id"], task["media_id"])
        refreshed += 1
    while True:
        before = await _staged_length(store, task["blob_path"], link, settings)
        try:
            result = await transfer_attachment(
                TransferRequest(url=link, blob_path=task["blob_path"]),
                session=session,
                store=store,
                policy=policy,
                settings=settings,
                now=utc_now(),
                extension=task["extension"],
            )
            return MediaDownload(result, refreshed, resumed)
        except ClassifiedError as exc:
            if needs_refresh(exc.failure) and refreshed < MAX_REFRESHES:
                link = await refreshed_link(api, task["project_id"], task["media_id"])
                refreshed += 1
                continue
            if exc.failure.category is ErrorCategory.TRANSIENT and resumed < MAX_RESUMES:
                after = await _staged_length(store, task["blob_path"], link, settings)
                if after > before:
                    resumed += 1
                    metrics.add("claimx.media.resumes")
                    log.info(
                        "media transfer cut off; resuming from the staged prefix",
                        extra={"media_id": task["media_id"], "staged_bytes": after},
                    )
                    continue
            raise


async def _staged_length(store: AttachmentStore, path: str, link: str, settings: Settings) -> int:
    staged = await store.staged(path, url_tag=url_tag(link), block_size=settings.transfer_block_size_mb * MIB)
    return staged.length if staged is not None else 0
