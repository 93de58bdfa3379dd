"""HTTP-triggered functions served as the Functions host serves them: ``/<routePrefix>/<route>``,
the binding's methods, and its ``authLevel`` checked against the keys (``?code=`` or the
``x-functions-key`` header): ``anonymous`` is open, ``function`` takes the function's own keys or
a host key, ``admin`` only the master key; a missing or wrong key gets 401."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import azure.functions as func
from aiohttp import web

from .indexing import HTTP_TRIGGER, IndexedFunction, IndexingError
from .invocation import call_with_timeout

log = logging.getLogger("local_host.http")

_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}")


def aiohttp_routes(template: str) -> list[str]:
    """aiohttp paths for a Functions route template: constraints dropped, ``{*rest}`` as a
    catch-all, an optional last ``{name?}`` served with and without it."""
    optional = False

    def convert(match: re.Match[str]) -> str:
        nonlocal optional
        catch_all, name, maybe = match.groups()
        optional = optional or bool(maybe)
        return f"{{{name}:.*}}" if catch_all else f"{{{name}}}"

    path = _PARAMETER.sub(convert, template.strip("/"))
    if not optional:
        return [path]
    shorter = _PARAMETER.sub("", template.strip("/")).rstrip("/")
    return [path, shorter]


@dataclass(frozen=True)
class FunctionKeys:
    """The keys the host checks: host keys, the master key, and per-function keys."""

    host: Collection[str]
    master: str
    functions: Mapping[str, Collection[str]]

    def allows(self, function: IndexedFunction, key: str | None) -> bool:
        level = function.auth_level
        if level == "anonymous":
            return True
        if not key:
            return False
        if level == "admin":
            return key == self.master
        return key == self.master or key in self.host or key in self.functions.get(function.name, ())


class HttpTriggers:
    """Routes for every HTTP-triggered function of the app."""

    def __init__(
        self,
        functions: Mapping[str, IndexedFunction],
        *,
        route_prefix: str,
        keys: FunctionKeys,
        bindings: Callable[[IndexedFunction], dict[str, Any]],
        timeout: timedelta | None,
    ) -> None:
        self.functions = [f for f in functions.values() if f.trigger_type == HTTP_TRIGGER]
        self.prefix = f"/{route_prefix}" if route_prefix else ""
        self.keys = keys
        self._bindings = bindings
        self._timeout = timeout

    def add_routes(self, app: web.Application) -> None:
        for function in self.functions:
            methods = [
                str(getattr(m, "value", m)).upper() for m in function.trigger.get("methods") or ()
            ] or ["*"]
            template = str(function.trigger.get("route") or function.name)
            for path in aiohttp_routes(template):
                for method in methods:
                    try:
                        app.router.add_route(method, f"{self.prefix}/{path}", self._handler(function))
                    except ValueError as exc:
                        raise IndexingError(f"function {function.name!r}: route {template!r}: {exc}") from exc

    def _handler(self, function: IndexedFunction) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            key = request.query.get("code") or request.headers.get("x-functions-key")
            if not self.keys.allows(function, key):
                return web.Response(status=401)
            return await self._invoke(function, request)

        return handle

    async def _invoke(self, function: IndexedFunction, request: web.Request) -> web.StreamResponse:
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=dict(request.match_info),
            body=await request.read(),
        )
        kwargs = {function.trigger_param: http_request, **self._bindings(function)}
        try:
            result = await call_with_timeout(function, kwargs, self._timeout)
        except Exception:
            log.exception("HTTP function %s failed", function.name)
            return web.Response(status=500)
        if isinstance(result, func.HttpResponse):
            headers = {k: v for k, v in result.headers.items() if k.lower() != "content-type"}
            content_type = result.mimetype or "text/plain"
            return web.Response(
                status=result.status_code,
                body=result.get_body(),
                headers=headers,
                content_type=content_type,
                charset=result.charset
                if content_type.startswith("text/") or "json" in content_type
                else None,
            )
        if result is None:
            return web.Response(status=204)
        return web.Response(status=200, text=str(result))
