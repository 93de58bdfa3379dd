"""The Durable HTTP management API on a loopback aiohttp server, with the extension's routes and
status codes (``HttpApiHandler.cs``).

Two prefixes serve the same handlers, as in the real host:

* ``/runtime/webhooks/durabletask/`` — the public webhook (``baseUrl``, management URLs, the ops CLI);
  it needs a host key as ``?code=`` or ``x-functions-key`` (401 otherwise).
* ``/durabletask/`` — the extension's local RPC listener (``rpcBaseUrl``), which the Python
  ``DurableOrchestrationClient`` calls. The SDK never appends ``requiredQueryStringParameters`` to
  RPC calls, and the real listener is loopback-only and keyless, so this prefix is keyless too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .history import to_status_history
from .management import InstanceStatus, Management
from .persistence import InstanceQuery
from .scheduler import InstanceExists, InstanceGone, InstanceNotFound, InstanceNotTerminal, UnknownFunction

WEBHOOK_PREFIX = "/runtime/webhooks/durabletask"
RPC_PREFIX = "/durabletask"
CONTINUATION_HEADER = "x-ms-continuation-token"
DEFAULT_PAGE_SIZE = 100
_KNOWN_STATUSES = (
    "Running",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "Canceled",
    "Terminated",
    "Pending",
    "Suspended",
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ManagementUrls:
    """Builds the URLs the extension hands out (binding JSON, 202 start payloads)."""

    base_url: str  # e.g. http://127.0.0.1:7071/runtime/webhooks/durabletask
    task_hub: str
    connection: str
    code: str

    def _query(self) -> str:
        return f"taskHub={quote(self.task_hub)}&connection={quote(self.connection)}&code={quote(self.code)}"

    def payload(self, instance_id: str) -> dict[str, str]:
        path_id = instance_id if instance_id == "INSTANCEID" else quote(instance_id, safe="")
        prefix = f"{self.base_url}/instances/{path_id}"
        query = self._query()
        return {
            "id": instance_id,
            "purgeHistoryDeleteUri": f"{prefix}?{query}",
            "sendEventPostUri": f"{prefix}/raiseEvent/{{eventName}}?{query}",
            "statusQueryGetUri": f"{prefix}?{query}",
            "terminatePostUri": f"{prefix}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{prefix}/rewind?reason={{text}}&{query}",
            "restartPostUri": f"{prefix}/restart?{query}",
            "suspendPostUri": f"{prefix}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{prefix}/resume?reason={{text}}&{query}",
        }

    def client_binding(self, rpc_base_url: str) -> dict[str, Any]:
        """The ``durableClient`` input the host passes to a function (``OrchestrationClientInputData``)."""
        create = f"{self.base_url}/orchestrators/{{functionName}}[/{{instanceId}}]"
        return {
            "taskHubName": self.task_hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{create}?code={quote(self.code)}",
                "createAndWaitOnNewInstancePostUri": (
                    f"{create}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&code={quote(self.code)}"
                ),
            },
            "managementUrls": self.payload("INSTANCEID"),
            "baseUrl": self.base_url,
            "requiredQueryStringParameters": f"code={quote(self.code)}",
            "rpcBaseUrl": rpc_base_url,
            "httpBaseUrl": "",
            "connectionName": self.connection,
        }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _error(status: int, message: str, exc: BaseException | None = None) -> web.Response:
    body = {"Message": message}
    if exc is not None:
        body |= {"ExceptionMessage": str(exc), "ExceptionType": type(exc).__name__}
    return _json(status, body)


def _bool(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.strip().lower() == "true"


def _datetime(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if not value:
        return None
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _statuses(request: web.Request) -> tuple[str, ...]:
    wanted = {
        s.strip().lower() for value in request.query.getall("runtimeStatus", []) for s in value.split(",")
    }
    return tuple(s for s in _KNOWN_STATUSES if s.lower() in wanted)


def _token(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def status_payload(status: InstanceStatus, *, show_input: bool, show_history_output: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": status.name,
        "instanceId": status.instance_id,
        "runtimeStatus": status.runtime_status,
        "input": _token(status.input) if show_input else None,
        "customStatus": _token(status.custom_status),
        "output": _token(status.output),
        "createdTime": status.created_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lastUpdatedTime": status.last_updated_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if status.history is not None:
        payload["historyEvents"] = to_status_history(status.history, show_output=show_history_output)
    return payload


class ManagementApi:
    """Request handlers over :class:`Management`."""

    def __init__(self, management: Management, urls: ManagementUrls, host_keys: Collection[str]) -> None:
        self.management = management
        self.urls = urls
        self.host_keys = frozenset(host_keys)

    def add_routes(self, app: web.Application) -> None:
        app.middlewares.append(self._require_key)
        for prefix in (WEBHOOK_PREFIX, RPC_PREFIX):
            app.router.add_post(f"{prefix}/orchestrators/{{name}}", self.start)
            app.router.add_post(f"{prefix}/orchestrators/{{name}}/{{instance_id}}", self.start)
            for path in (f"{prefix}/instances", f"{prefix}/instances/"):
                app.router.add_get(path, self.list_instances)
                app.router.add_delete(path, self.purge_by)
            app.router.add_get(f"{prefix}/instances/{{instance_id}}", self.get_status)
            app.router.add_delete(f"{prefix}/instances/{{instance_id}}", self.purge)
            app.router.add_post(f"{prefix}/instances/{{instance_id}}/raiseEvent/{{event}}", self.raise_event)
            app.router.add_post(f"{prefix}/instances/{{instance_id}}/{{operation}}", self.operation)

    @web.middleware
    async def _require_key(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(WEBHOOK_PREFIX + "/"):
            key = request.query.get("code") or request.headers.get("x-functions-key")
            if key not in self.host_keys:
                return web.Response(status=401)
        return await handler(request)

    async def start(self, request: web.Request) -> web.Response:
        body = await request.text()
        if body:
            try:
                json.loads(body)
            except ValueError as exc:
                return _error(400, "Invalid JSON content", exc)
        try:
            instance_id = await self.management.start(
                request.match_info["name"], request.match_info.get("instance_id") or None, body or None
            )
        except InstanceExists as exc:
            return _error(409, str(exc), exc)
        except ValueError as exc:
            return _error(400, str(exc), exc)
        payload = self.urls.payload(instance_id)
        return _json(202, payload, {"Location": payload["statusQueryGetUri"], "Retry-After": "10"})

    async def get_status(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        status = await self.management.status(instance_id, with_history=_bool(request, "showHistory", False))
        if status is None:
            return web.Response(status=404)
        payload = status_payload(
            status,
            show_input=_bool(request, "showInput", True),
            show_history_output=_bool(request, "showHistoryOutput", False),
        )
        if status.runtime_status in ("Running", "Pending", "ContinuedAsNew", "Suspended"):
            return _json(202, payload, {"Location": str(request.url), "Retry-After": "5"})
        failed_as_500 = status.runtime_status == "Failed" and _bool(
            request, "returnInternalServerErrorOnFailure", False
        )
        return _json(500 if failed_as_500 else 200, payload)

    async def list_instances(self, request: web.Request) -> web.Response:
        query = InstanceQuery(
            runtime_status=_statuses(request),
            created_from=_datetime(request, "createdTimeFrom"),
            created_to=_datetime(request, "createdTimeTo"),
            instance_id_prefix=request.query.get("instanceIdPrefix") or None,
        )
        try:
            page_size = int(request.query.get("top", DEFAULT_PAGE_SIZE))
            statuses, token = await self.management.query(
                query, page_size=max(page_size, 1), continuation=request.headers.get(CONTINUATION_HEADER)
            )
        except ValueError as exc:
            return _error(400, "One or more of the arguments submitted is incorrect", exc)
        show_input = _bool(request, "showInput", True)
        body = [status_payload(s, show_input=show_input, show_history_output=False) for s in statuses]
        return _json(200, body, {CONTINUATION_HEADER: token} if token else None)

    async def purge(self, request: web.Request) -> web.Response:
        try:
            deleted = await self.management.purge(request.match_info["instance_id"])
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceNotTerminal as exc:
            return _json(412, str(exc))
        return _json(200, {"instancesDeleted": deleted})

    async def purge_by(self, request: web.Request) -> web.Response:
        created_from = _datetime(request, "createdTimeFrom")
        if created_from is None:
            return _json(400, "Please provide value for 'createdTimeFrom' parameter.")
        query = InstanceQuery(
            runtime_status=_statuses(request),
            created_from=created_from,
            created_to=_datetime(request, "createdTimeTo") or self.management.clock.now(),
        )
        deleted = await self.management.purge_by(query)
        return _json(200, {"instancesDeleted": deleted}) if deleted else web.Response(status=404)

    async def raise_event(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        if request.content_type.lower() != "application/json":
            return _error(400, "Only application/json request content is supported")
        body = await request.text()
        try:
            json.loads(body or "null")
        except ValueError as exc:
            return _error(400, "Invalid JSON content", exc)
        try:
            await self.management.raise_event(instance_id, request.match_info["event"], body or "null")
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceGone:
            return web.Response(status=410)
        return web.Response(status=202)

    async def operation(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        operation = request.match_info["operation"].lower()
        reason = request.query.get("reason")
        try:
            if operation == "terminate":
                await self.management.terminate(instance_id, reason)
            elif operation in ("suspend", "resume"):
                await self.management.set_suspended(instance_id, operation == "suspend", reason)
            elif operation == "restart":
                try:
                    new_id = await self.management.restart(
                        instance_id, new_instance_id=_bool(request, "restartWithNewInstanceId", True)
                    )
                except InstanceNotFound as exc:
                    return _error(400, "InstanceId does not match a valid orchestration instance.", exc)
                payload = self.urls.payload(new_id)
                return _json(202, payload, {"Location": payload["statusQueryGetUri"], "Retry-After": "10"})
            elif operation == "rewind":
                if await self.management.status(instance_id) is None:
                    return web.Response(status=404)
                return _error(501, "Rewind is not supported by the underlying storage provider.")
            else:
                return web.Response(status=404)
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceGone:
            return web.Response(status=410)
        except InstanceExists as exc:
            return _error(409, "A non-terminal instance with this instance ID already exists.", exc)
        except UnknownFunction as exc:
            return _error(400, str(exc), exc)
        return web.Response(status=202)
