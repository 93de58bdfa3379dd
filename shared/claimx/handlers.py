"""One handler per ClaimX event type: API calls → entity rows (+ media download tasks).

Every handler that fetches the project export stores the project row and its contacts; a
project-cache hit stores nothing more for the project (minimal rows where the event itself carries
a value). Only the media ids that events name become rows and downloads. Failures raise
:class:`ClassifiedError`: a missing media id, a non-numeric task assignment id and an unknown project
(404) are PERMANENT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cachetools import TTLCache

from shared.claimx import events as ev
from shared.claimx.api import ClaimXApi
from shared.claimx.paths import media_target
from shared.claimx.tables import (
    CLAIMX_ATTACHMENT_METADATA,
    CLAIMX_CONTACTS,
    CLAIMX_EXTERNAL_LINKS,
    CLAIMX_PROJECTS,
    CLAIMX_TASK_TEMPLATES,
    CLAIMX_TASKS,
    CLAIMX_VIDEO_COLLAB,
)
from shared.claimx.transformers import (
    Stamp,
    contact_rows,
    external_link_row,
    ident,
    link_contact_row,
    media_row,
    project_row,
    task_row,
    template_row,
    video_row,
)
from shared.clock import utc_now
from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.lake.tables import Row
from shared.transfer.urls import UrlPolicy

log = logging.getLogger(__name__)

MEDIA_IDS_LIMIT = 5  # up to this many ids are asked for by id, more fetch the project's whole list
MEDIA_BATCH_SECONDS = 0.0  # file events that reach the lookup in one turn of the event loop share a call


@dataclass(slots=True)
class Enrichment:
    """What one event produced: rows per table, download tasks, rejected media."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    downloads: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    fetched_project: str | None = None  # remember in the cache once the rows are staged

    def add(self, table: str, *rows: Row | None) -> None:
        self.rows.setdefault(table, []).extend(row for row in rows if row is not None)


class ProjectCache:
    """Projects whose rows this process stored recently (TTL); concurrent fetches of one project
    share one API call."""

    def __init__(self, ttl_seconds: int, maxsize: int = 50_000) -> None:
        self._stored: TTLCache[str, bool] = TTLCache(
            maxsize=maxsize, ttl=max(ttl_seconds, 0) or 1e-9, timer=lambda: utc_now().timestamp()
        )
        self._enabled = ttl_seconds > 0
        self._inflight: dict[tuple[int, str], asyncio.Future[dict[str, Any]]] = {}

    def __contains__(self, project_id: object) -> bool:
        return self._enabled and project_id in self._stored

    def remember(self, project_id: str) -> None:
        if self._enabled:
            self._stored[project_id] = True

    async def fetch(
        self, project_id: str, load: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """The export, or ``None`` on a cache hit."""
        if project_id in self:
            return None
        key = (id(asyncio.get_running_loop()), project_id)
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(pending)


class MediaLookup:
    """Media items by id. File events of one project that arrive together (in one turn of the
    event loop, as concurrent activities do) share one call: up to five ids by ``mediaIds``, more
    by the project's whole list. Waiting longer to gather more costs every event that latency."""

    def __init__(self, api: ClaimXApi, window_seconds: float = MEDIA_BATCH_SECONDS) -> None:
        self._api = api
        self._window = window_seconds
        self._pending: dict[str, tuple[set[str], asyncio.Future[list[dict[str, Any]]]]] = {}

    async def item(self, project_id: str, media_id: str) -> dict[str, Any]:
        batch = self._pending.get(project_id)
        if batch is None:
            batch = (set(), asyncio.get_running_loop().create_future())
            self._pending[project_id] = batch
            asyncio.get_running_loop().call_later(self._window, self._flush, project_id)
        batch[0].add(media_id)
        items = await asyncio.shield(batch[1])
        for item in items:
            if ident(item.get("mediaID") or item.get("mediaId")) == media_id:
                return item
        raise ClassifiedError(
            Failure.of(
                ErrorCategory.PERMANENT, f"media {media_id} not found in the API response for {project_id}"
            )
        )

    def _flush(self, project_id: str) -> None:
        ids, future = self._pending.pop(project_id)
        wanted = sorted(ids) if len(ids) <= MEDIA_IDS_LIMIT else None
        task = asyncio.ensure_future(self._api.media(project_id, wanted))

        def done(finished: asyncio.Future[list[dict[str, Any]]]) -> None:
            if finished.cancelled():
                future.cancel()
            elif (error := finished.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(finished.result())

        task.add_done_callback(done)


@dataclass(slots=True)
class Handlers:
    api: ClaimXApi
    projects: ProjectCache
    media: MediaLookup
    url_policy: UrlPolicy

    async def enrich(self, event: Mapping[str, Any]) -> Enrichment:
        handler = _HANDLERS.get(event["event_type"])
        if handler is None:
            raise ClassifiedError(
                Failure.of(ErrorCategory.PERMANENT, f"unknown event type {event['event_type']!r}")
            )
        result = Enrichment()
        await handler(self, event, _stamp(event), result)
        return result

    async def _project(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> Row | None:
        """Fetch the export unless cached; store the project row and its contacts. Returns the row."""
        project_id = event["project_id"]
        export = await self.projects.fetch(project_id, lambda: self.api.project(project_id))
        if export is None:
            return None
        row = project_row(export, stamp, project_id)
        result.add(CLAIMX_PROJECTS.name, row)
        result.add(CLAIMX_CONTACTS.name, *contact_rows(export, stamp, project_id))
        result.fetched_project = project_id
        return row

    # -- the handlers --------------------------------------------------------------------------
    async def project_created(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> None:
        await self._project(event, stamp, result)

    async def mfn_added(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> None:
        row = await self._project(event, stamp, result)
        mfn = event.get("master_file_name")
        if row is not None:
            if mfn:
                row["master_file_name"] = mfn
        elif mfn:
            result.add(CLAIMX_PROJECTS.name, stamp.row(project_id=event["project_id"], master_file_name=mfn))

    async def file_added(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> None:
        media_id = event.get("media_id")
        if not media_id:
            raise ClassifiedError(
                Failure.of(ErrorCategory.PERMANENT, "PROJECT_FILE_ADDED without a media id")
            )
        project_id = event["project_id"]
        _, item = await asyncio.gather(
            self._project(event, stamp, result), self.media.item(project_id, media_id)
        )
        row = media_row(item, stamp, project_id)
        row["media_id"] = media_id
        result.add(CLAIMX_ATTACHMENT_METADATA.name, row)
        link = item.get("fullDownloadLink")
        if isinstance(link, str) and link.strip():
            self._download(event, item, link.strip(), result)

    def _download(
        self, event: Mapping[str, Any], item: Mapping[str, Any], link: str, result: Enrichment
    ) -> None:
        media_id, project_id = event["media_id"], event["project_id"]
        task: dict[str, Any] = {
            "trace_id": event["trace_id"],
            "project_id": project_id,
            "media_id": media_id,
            "url": link,
            "media_name": item.get("mediaName") if isinstance(item.get("mediaName"), str) else None,
        }
        try:
            self.url_policy.check(link)
            target = media_target(project_id, media_id, task["media_name"], link)
        except ClassifiedError as exc:
            result.rejected.append({**task, "failure": exc.failure.to_dict()})
            return
        task.update(blob_path=target.blob_path, file_name=target.file_name, extension=target.extension)
        result.downloads.append(task)

    async def task_event(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> None:
        assignment_id = event.get("task_assignment_id")
        if not assignment_id or not str(assignment_id).isdigit():
            raise ClassifiedError(
                Failure.of(
                    ErrorCategory.PERMANENT, f"task assignment id {str(assignment_id)[:40]!r} is not numeric"
                )
            )
        project_id = event["project_id"]
        _, assignment = await asyncio.gather(
            self._project(event, stamp, result), self.api.task_assignment(assignment_id)
        )
        result.add(CLAIMX_TASKS.name, task_row(assignment, stamp, project_id))
        template = assignment.get("customTask")
        if isinstance(template, Mapping) and ident(template.get("taskId")):
            result.add(CLAIMX_TASK_TEMPLATES.name, template_row(template, stamp))
        link = assignment.get("externalLinkData")
        if isinstance(link, Mapping) and ident(link.get("linkId")):
            result.add(CLAIMX_EXTERNAL_LINKS.name, external_link_row(link, stamp, assignment_id, project_id))
            result.add(CLAIMX_CONTACTS.name, link_contact_row(link, stamp, assignment_id, project_id))

    async def policyholder(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> None:
        column = (
            "policyholder_invited_at"
            if event["event_type"] == ev.POLICYHOLDER_INVITED
            else "policyholder_joined_at"
        )
        row = await self._project(event, stamp, result)
        if row is not None:
            row[column] = stamp.at
        else:
            result.add(CLAIMX_PROJECTS.name, stamp.row(project_id=event["project_id"], **{column: stamp.at}))

    async def xa_autolink_failed(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> None:
        result.add(
            CLAIMX_PROJECTS.name,
            stamp.row(project_id=event["project_id"], xa_autolink_fail=True, xa_autolink_fail_at=stamp.at),
        )

    async def video(self, event: Mapping[str, Any], stamp: Stamp, result: Enrichment) -> None:
        project_id = event["project_id"]
        _, items = await asyncio.gather(
            self._project(event, stamp, result), self.api.video_collaboration(project_id)
        )
        chosen = next(
            (i for i in items if ident(i.get("claimId")) == project_id), items[0] if items else None
        )
        if chosen is None:
            return
        row = video_row(chosen, stamp, project_id)
        if row["video_collaboration_id"] is None:
            row["video_collaboration_id"] = event.get("video_collaboration_id")
        if row["video_collaboration_id"] is not None:
            result.add(CLAIMX_VIDEO_COLLAB.name, row)


Handler = Callable[[Handlers, Mapping[str, Any], Stamp, Enrichment], Awaitable[None]]

_HANDLERS: dict[str, Handler] = {
    ev.PROJECT_CREATED: Handlers.project_created,
    ev.PROJECT_MFN_ADDED: Handlers.mfn_added,
    ev.PROJECT_FILE_ADDED: Handlers.file_added,
    ev.CUSTOM_TASK_ASSIGNED: Handlers.task_event,
    ev.CUSTOM_TASK_COMPLETED: Handlers.task_event,
    ev.POLICYHOLDER_INVITED: Handlers.policyholder,
    ev.POLICYHOLDER_JOINED: Handlers.policyholder,
    ev.XA_AUTOLINK_FAILED: Handlers.xa_autolink_failed,
    ev.VIDEO_INVITE_SENT: Handlers.video,
    ev.VIDEO_COMPLETED: Handlers.video,
}
assert set(_HANDLERS) == ev.EVENT_TYPES


def _stamp(event: Mapping[str, Any]) -> Stamp:
    return Stamp(trace_id=event["trace_id"], at=datetime.fromisoformat(event["ingested_at"]))
