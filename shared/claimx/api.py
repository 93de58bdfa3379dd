"""The ClaimX REST API client: one per process, shared by every activity.

Every call goes through the same pipeline: the circuit breaker admits it, a semaphore bounds the
calls in flight (``CLAIMX_API_CONCURRENCY``), an optional token bucket paces them
(``CLAIMX_API_RATE_LIMIT_PER_SECOND``; 0 = off), and each request has its own timeout. Answers map
to error classes: any 2xx is success; 401 is AUTH; 403, 404 and the other 4xx are PERMANENT; 429,
5xx, any other status, timeouts and connection errors are TRANSIENT. TRANSIENT answers are tried
again here (3 tries, exponential back-off from ``CLAIMX_API_RETRY_BACKOFF_SECONDS``) before the
orchestration's schedule takes over.

The Basic credential goes only to ClaimX hosts (decided per request on its real URL), never to
the S3 hosts media links redirect to. It never appears in a message: errors name the method and
path only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiolimiter import AsyncLimiter

from shared import metrics
from shared.claimx.circuit import CircuitBreaker
from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.transfer.http import SimulationRouter, create_session
from shared.transfer.urls import UrlPolicy

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger(__name__)

LOCAL_TRIES = 3
CLAIMX_WEB_HOSTS = ("www.claimxperience.com", "claimxperience.com")
VIDEO_REPORT = "VIDEO_COLLABORATION"
TASK_REPORT = "CUSTOM_TASK_HIGH_LEVEL"
EXTERNAL_LINK_TASK = "CUSTOM_TASK_ASSIGN_EXTERNAL_LINK"


def classify_api_status(status: int) -> ErrorCategory | None:
    """``None`` for success (any 2xx); the API's own table otherwise."""
    if 200 <= status < 300:
        return None
    if status == 401:
        return ErrorCategory.AUTH
    if status == 429:
        return ErrorCategory.TRANSIENT
    if 400 <= status < 500:
        return ErrorCategory.PERMANENT
    return ErrorCategory.TRANSIENT


@dataclass(frozen=True, slots=True)
class ApiSettings:
    base_url: str
    token: str | None
    timeout_seconds: float
    concurrency: int
    rate_per_second: float
    backoff_seconds: float
    sender_username: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiSettings:
        token = settings.claimx_api_token.get_secret_value() if settings.claimx_api_token else None
        return cls(
            base_url=settings.claimx_api_url.rstrip("/"),
            token=token or None,
            timeout_seconds=settings.claimx_api_timeout_seconds,
            concurrency=settings.claimx_api_concurrency,
            rate_per_second=settings.claimx_api_rate_limit_per_second,
            backoff_seconds=settings.claimx_api_retry_backoff_seconds,
            sender_username=settings.claimx_sender_username,
        )

    @property
    def host(self) -> str:
        return (urlsplit(self.base_url).hostname or "").lower()

    @property
    def auth_hosts(self) -> tuple[str, ...]:
        """Hosts that receive the Basic credential: the API host and the ClaimX web hosts."""
        return tuple(dict.fromkeys((self.host, *CLAIMX_WEB_HOSTS)))

    def auth_headers(self) -> dict[str, dict[str, str]]:
        if not self.token:
            return {}
        return {host: {"Authorization": f"Basic {self.token}"} for host in self.auth_hosts}


def claimx_session(
    settings: Settings, api: ApiSettings, *, policy: UrlPolicy, limit: int
) -> aiohttp.ClientSession:
    """A session whose requests to ClaimX hosts carry the credential (API and media links)."""
    router = SimulationRouter.from_settings(settings)
    if router is not None:
        router = SimulationRouter(router.target, router.hosts | set(api.auth_hosts))
    return create_session(
        settings,
        policy=policy,
        router=router,
        limit=limit,
        limit_per_host=limit,
        host_headers=api.auth_headers(),
    )


class ClaimXApi:
    """Calls the ClaimX API through ``session`` (bound to one event loop)."""

    def __init__(
        self,
        api: ApiSettings,
        session: aiohttp.ClientSession,
        *,
        breaker: CircuitBreaker,
    ) -> None:
        self.api = api
        self.session = session
        self.breaker = breaker
        self._slots = asyncio.Semaphore(api.concurrency)
        self._limiter = AsyncLimiter(api.rate_per_second, 1.0) if api.rate_per_second > 0 else None
        self.requests = 0  # answers received (benchmarks and tests read it)

    @classmethod
    def open(cls, settings: Settings, breaker: CircuitBreaker) -> ClaimXApi:
        """A client with its own session (call from the event loop that will use it)."""
        api = ApiSettings.from_settings(settings)
        policy = UrlPolicy.of(
            (*settings.allowed_attachment_hosts, api.host),
            simulation=settings.simulation_mode,
            production=settings.is_production,
        )
        return cls(api, claimx_session(settings, api, policy=policy, limit=api.concurrency), breaker=breaker)

    async def close(self) -> None:
        await self.session.close()

    # -- endpoints -------------------------------------------------------------------------
    async def project(self, project_id: str) -> dict[str, Any]:
        """``GET /export/project/{id}``; the ``data`` wrapper is removed when present."""
        answer = await self.request("GET", f"/export/project/{_segment(project_id)}")
        data = answer.get("data", answer) if isinstance(answer, dict) else None
        if not isinstance(data, dict):
            raise _fail(ErrorCategory.PERMANENT, f"project {project_id}: the export is not an object")
        return data

    async def media(self, project_id: str, media_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """``GET /export/project/{id}/media``, for the given ids or the whole project."""
        params = {"mediaIds": ",".join(media_ids)} if media_ids else None
        answer = await self.request("GET", f"/export/project/{_segment(project_id)}/media", params=params)
        return _items(answer, "data", "media")

    async def task_assignment(self, assignment_id: str) -> dict[str, Any]:
        answer = await self.request(
            "GET", f"/customTasks/assignment/{_segment(assignment_id)}", params={"full": "true"}
        )
        if not isinstance(answer, dict):
            raise _fail(ErrorCategory.PERMANENT, f"task assignment {assignment_id}: not an object")
        data = answer.get("data")
        return data if isinstance(data, dict) and "assignmentId" in data else answer

    async def video_collaboration(
        self, project_id: str, *, start_date: str | None = None, end_date: str | None = None
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "reportType": VIDEO_REPORT,
            "projectId": int(project_id),
            "senderUsername": self.api.sender_username,
        }
        if start_date:
            body["startDate"] = start_date
        if end_date:
            body["endDate"] = end_date
        answer = await self.request("POST", "/data", body=body)
        return _items(answer, "data", "collaborations", "videoCollaboration")

    async def custom_tasks_report(self, project_id: str) -> list[dict[str, Any]]:
        body = {
            "reportType": TASK_REPORT,
            "projectId": int(project_id),
            "senderUsername": self.api.sender_username,
        }
        return _items(await self.request("POST", "/data", body=body), "data")

    async def contacts(self, project_id: str) -> list[dict[str, Any]]:
        answer = await self.request("GET", f"/export/project/{_segment(project_id)}/contacts")
        return _items(answer, "data", "contacts")

    async def conversations(self, project_id: str) -> list[dict[str, Any]]:
        answer = await self.request("GET", f"/export/project/{_segment(project_id)}/conversations")
        return _items(answer, "data", "conversations")

    async def project_id_for_claim(self, claim_number: str) -> str | None:
        """The project of a claim number; ``None`` when ClaimX knows none (404)."""
        try:
            answer = await self.request(
                "GET", "/export/project/projectId", params={"projectNumber": claim_number}
            )
        except ClassifiedError as exc:
            if exc.failure.http_status == 404:
                return None
            raise
        if isinstance(answer, dict):
            answer = answer.get("projectId", answer.get("id"))
        if isinstance(answer, bool) or answer is None:
            return None
        text = str(answer).strip()
        return text if text.isdigit() else None

    async def create_task(
        self,
        project_id: str,
        *,
        task_name: str,
        task_id: int,
        data: Mapping[str, Any] | None = None,
        sender_username: str | None = None,
    ) -> Any:
        """``POST /import/project/actions``: assign a custom task with an external link."""
        body: dict[str, Any] = {
            "projectId": int(project_id),
            "usePrimaryContactAsSender": True,
            "type": EXTERNAL_LINK_TASK,
            "data": {
                "customTaskName": task_name,
                "customTaskId": task_id,
                "notificationType": "COPY_EXTERNAL_LINK_URL",
                **(data or {}),
            },
        }
        sender = sender_username if sender_username is not None else self.api.sender_username
        if sender:
            body["senderUserName"] = sender
        return await self.request("POST", "/import/project/actions", body=body)

    # -- the request pipeline --------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """One API call with the local retry of TRANSIENT answers; raises :class:`ClassifiedError`."""
        for attempt in range(1, LOCAL_TRIES + 1):
            try:
                return await self._once(method, path, params, body)
            except ClassifiedError as exc:
                if exc.failure.category is not ErrorCategory.TRANSIENT or attempt == LOCAL_TRIES:
                    raise
                metrics.add("claimx.api.local_retries")
                await asyncio.sleep(self.api.backoff_seconds * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, params: Mapping[str, str] | None, body: Any) -> Any:
        ticket = self.breaker.admit()
        where = f"{method} {path}"
        answered = False  # the service gave an answer on purpose: a success for the breaker
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(self._slots)
                if self._limiter is not None:
                    await stack.enter_async_context(self._limiter)
                async with asyncio.timeout(self.api.timeout_seconds):
                    response = await self.session.request(
                        method,
                        self.api.base_url + path,
                        params=dict(params) if params else None,
                        data=None if body is None else json.dumps(body),
                        headers=_HEADERS,
                        allow_redirects=False,
                    )
                    async with response:
                        payload = await response.read()
            self.requests += 1
            category = classify_api_status(response.status)
            answered = category in (None, ErrorCategory.AUTH, ErrorCategory.PERMANENT)
            if category is None:
                return _json(payload, where)
            raise _fail(category, f"ClaimX API {where} answered HTTP {response.status}", response.status)
        except TimeoutError:
            raise _fail(
                ErrorCategory.TRANSIENT, f"ClaimX API {where} timed out after {self.api.timeout_seconds} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise _fail(ErrorCategory.TRANSIENT, f"ClaimX API {where}: {type(exc).__name__}") from None
        finally:
            if answered:
                self.breaker.record_success(ticket)
            else:
                self.breaker.record_failure(ticket)


_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


def _fail(category: ErrorCategory, message: str, status: int | None = None) -> ClassifiedError:
    return ClassifiedError(Failure.of(category, message, status))


def _segment(value: str) -> str:
    """An id as one path segment (ids are digits; anything else is escaped, never a separator)."""
    return quote(str(value), safe="")


def _json(payload: bytes, where: str) -> Any:
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        raise _fail(ErrorCategory.PERMANENT, f"ClaimX API {where} answered with invalid JSON") from None


def _items(answer: Any, *wrappers: str) -> list[dict[str, Any]]:
    """A list answer, unwrapped from the first wrapper key present; a single object is a list of one."""
    if isinstance(answer, dict):
        for key in wrappers:
            if key in answer:
                answer = answer[key]
                break
    if isinstance(answer, dict):
        answer = [answer]
    if not isinstance(answer, list):
        return []
    return [item for item in answer if isinstance(item, dict)]
