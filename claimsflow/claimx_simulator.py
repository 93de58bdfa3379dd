"""The ClaimX side of the simulator: the REST API under ``/service/cxedirest`` serving the world
file's ``claimx`` section, media links on the ClaimX web hosts that answer 302 to an S3-style URL
(whose bytes follow the attachment simulator's content rule), and an Eventhouse query endpoint
speaking the Kusto v2 REST response format.

World section (API answers exactly in the API's own JSON shapes)::

    {"claimx": {"projects": {"<projectId>": <export/project answer>},
                "media": {"<projectId>": [<media item>, ...]},
                "tasks": {"<assignmentId>": <customTasks/assignment answer>},
                "video": {"<projectId>": <VIDEO_COLLABORATION report>}},
     "eventhouse": {"<table>": [{"ingestion_time": "<ISO>", <column>: <value>, ...}, ...]}}

The ClaimX web hosts play ClaimX only in a world with a ``claimx`` section; without one they
serve the content rule like any other allowlisted host. Unknown ids answer 404; ``mediaIds`` with
no match answers ``[]``. Media links are signed when answered (``systemDate`` or ``X-Amz-Date``
set to now, the lifetime kept), as ClaimX issues a fresh link per request; a ClaimX link whose
lifetime has passed answers 403. The world's ``faults`` apply to every request, matched on the
path.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

API_PREFIX = "/service/cxedirest"
CLAIMX_WEB_HOSTS = frozenset({"www.claimxperience.com", "claimxperience.com"})
S3_MEDIA_HOST = "claimxperience.s3.amazonaws.com"
KUSTO_QUERY_PATH = "/v2/rest/query"
S3_LINK_SECONDS = 3600

_PROJECT = re.compile(r"^/export/project/(?P<pid>[^/]+)(?P<rest>/media|/contacts|/conversations)?/?$")
_TASK = re.compile(r"^/customTasks/assignment/(?P<aid>[^/]+)/?$")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def _not_found(what: str) -> web.Response:
    return _json({"error": f"{what} not found"}, status=404)


@dataclass
class ClaimXSimulator:
    """Answers ClaimX requests for the attachment simulator; ``answer`` returns ``None`` for the rest."""

    world: dict[str, Any]
    clock: Callable[[], datetime]
    actions: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def section(self) -> dict[str, Any]:
        value = self.world.get("claimx") or {}
        return value if isinstance(value, dict) else {}

    def _part(self, name: str) -> dict[str, Any]:
        value = self.section.get(name) or {}
        return value if isinstance(value, dict) else {}

    async def answer(self, request: web.Request, path: str) -> web.StreamResponse | None:
        host = request.headers.get("Host", request.host).split(":", 1)[0].lower()
        if path == KUSTO_QUERY_PATH and request.method == "POST":
            from claimsflow.eventhouse_simulator import answer_query

            body = await request.json()
            self.queries.append(body)
            return answer_query(self.world.get("eventhouse") or {}, body)
        if host not in CLAIMX_WEB_HOSTS or "claimx" not in self.world:
            return None
        if path.startswith(API_PREFIX):
            api = await self._api(request, path.removeprefix(API_PREFIX))
            if api is not None:
                return api
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405)
        return self._media_redirect(request, path)

    # -- the REST API ----------------------------------------------------------------------
    async def _api(self, request: web.Request, route: str) -> web.Response | None:
        if request.method == "GET" and route.rstrip("/") == "/export/project/projectId":
            return self._project_id(request.query.get("projectNumber", ""))
        match = _PROJECT.match(route)
        if match and request.method == "GET":
            return self._project(match["pid"], match["rest"], request.query.get("mediaIds"))
        match = _TASK.match(route)
        if match and request.method == "GET":
            task = self._part("tasks").get(match["aid"])
            return _not_found("assignment") if task is None else _json(task)
        if route.rstrip("/") == "/data" and request.method == "POST":
            return self._report(await request.json())
        if route.rstrip("/") == "/import/project/actions" and request.method == "POST":
            body = await request.json()
            if str(body.get("projectId")) not in self._part("projects"):
                return _not_found("project")
            self.actions.append(body)
            return _json({"success": True})
        return None

    def _project(self, pid: str, rest: str | None, media_ids: str | None) -> web.Response:
        projects = self._part("projects")
        media = self._part("media")
        if pid not in projects and pid not in media:
            return _not_found("project")
        if rest is None:
            return _not_found("project") if pid not in projects else _json(projects[pid])
        if rest in ("/contacts", "/conversations"):
            return _json([])
        items = [item for item in media.get(pid, []) if isinstance(item, dict)]
        if media_ids:
            wanted = {part.strip() for part in media_ids.split(",") if part.strip()}
            items = [item for item in items if str(item.get("mediaID")) in wanted]
        return _json([self._signed(item) for item in items])

    def _project_id(self, number: str) -> web.Response:
        for pid, answer in self._part("projects").items():
            project = (answer.get("data", answer) if isinstance(answer, dict) else {}).get("project", {})
            if number and str(project.get("projectNumber")) == number:
                return _json(int(pid))
        return _not_found("project number")

    def _report(self, body: dict[str, Any]) -> web.Response:
        pid = str(body.get("projectId"))
        if pid not in self._part("projects"):
            return _not_found("project")
        if body.get("reportType") == "VIDEO_COLLABORATION":
            report = self._part("video").get(pid)
            return _json(report if report is not None else {"data": []})
        if body.get("reportType") == "CUSTOM_TASK_HIGH_LEVEL":
            tasks = [t for t in self._part("tasks").values() if str(t.get("projectId")) == pid]
            return _json({"data": tasks})
        return _json({"error": "unknown reportType"}, status=400)

    def _signed(self, item: dict[str, Any]) -> dict[str, Any]:
        link = item.get("fullDownloadLink")
        if not isinstance(link, str):
            return item
        return {**item, "fullDownloadLink": sign_link(link, self.clock())}

    # -- media links -----------------------------------------------------------------------
    def _media_redirect(self, request: web.Request, path: str) -> web.Response:
        query = {k.lower(): v for k, v in request.query.items()}
        if _claimx_link_expired(query, self.clock()):
            return web.Response(status=403, text="link expired")
        now = self.clock()
        target = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256"}
        if "size" in query:
            target = {"size": query["size"], **target}
        target |= {
            "X-Amz-Date": now.strftime("%Y%m%dT%H%M%SZ"),
            "X-Amz-Expires": str(S3_LINK_SECONDS),
            "X-Amz-Signature": hashlib.sha256(f"{path}|{now.isoformat()}".encode()).hexdigest(),
        }
        location = f"https://{S3_MEDIA_HOST}{path}?{urlencode(target)}"
        return web.Response(status=302, headers={"Location": location})


def sign_link(link: str, now: datetime) -> str:
    """The link with its signing time set to ``now`` (ClaimX ``systemDate`` or S3 ``X-Amz-Date``)."""
    parts = urlsplit(link)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    presigned = any(k.lower() in ("systemdate", "x-amz-date") for k, _ in pairs)
    stamped = []
    for key, value in pairs:
        if key.lower() == "systemdate":
            value = str(int(now.timestamp() * 1000))
        elif key.lower() == "x-amz-date":
            value = now.strftime("%Y%m%dT%H%M%SZ")
        elif key.lower() in ("sign", "x-amz-signature") and presigned:
            value = hashlib.sha256(f"{parts.path}|{now.isoformat()}".encode()).hexdigest()[:32]
        stamped.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(stamped, safe=":/")))


def _claimx_link_expired(query: dict[str, str], now: datetime) -> bool:
    try:
        signed = int(query["systemdate"])
        lifetime = int(query["expires"])
    except (KeyError, ValueError):
        return False
    return now.timestamp() * 1000 >= signed + lifetime
