"""Where an ops command works: the storage and task hub of a local run, or a deployed app.

Both targets give the same three things, so every command is written once:

* ``settings``: the app's settings, to read the state account (dead letters, dedup latches,
  staging) and the lakehouse (Delta tables, files) directly, with the caller's own access.
* ``durable()``: the Durable HTTP management API (list, status and history, restart, terminate,
  purge), the one interface to orchestration instances that exists both in Azure and locally.
* ``replay``, ``flush``, ``compact``: what needs the app's own identity. A deployed app does it
  behind its ops routes (master key); for a local run the command does it in process, as the app.

A local run has no host running once ``claimsflow run`` has finished, so ``durable()`` starts a
local host on the run's storage and task hub for the duration of the command. It serves the same
management routes the Functions host serves and runs no work (nothing is delivered, no timer
fires), so reading and managing instances goes through exactly the requests a deployed app answers,
and nothing reads the local host's private tables. Do not point write commands at a run that is
still in progress: that run's host keeps its own copy of the instances it is running.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from claimsflow.run import (
    AZURITE_PID_FILE,
    RunError,
    check_run_name,
    environment,
    run_environment,
    storage_answers,
)
from shared.config import Settings
from shared.redact import redact_text

APP_KEY_VARIABLE = "CLAIMSFLOW_APP_KEY"
CONTINUATION_HEADER = "x-ms-continuation-token"
NO_SIMULATOR = "http://127.0.0.1:9"  # read-only commands never download: nothing listens here


class TargetError(RuntimeError):
    """The command cannot reach what it targets (said plainly, without secrets)."""


class DurableApi:
    """The Durable management API over HTTP (``.../runtime/webhooks/durabletask``)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str, now: datetime) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._key = key
        self.now = now  # the target's clock: a local run's virtual time, a deployed app's wall time

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        query = {"code": self._key, **(params or {})}
        async with self._session.request(
            method, f"{self._base}/{path}", params=query, headers=headers
        ) as resp:
            text = await resp.text()
            if resp.status == 401:
                raise TargetError("the app refused the key (401): check the key in " + APP_KEY_VARIABLE)
            body = json.loads(text) if text and resp.content_type == "application/json" else text
            return resp.status, body, dict(resp.headers)

    async def pages(
        self,
        *,
        statuses: list[str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        prefix: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of instances, following the continuation token until the last page."""
        params = {"top": str(page_size), "showInput": "false"}
        if statuses:
            params["runtimeStatus"] = ",".join(statuses)
        if created_from:
            params["createdTimeFrom"] = created_from.isoformat()
        if created_to:
            params["createdTimeTo"] = created_to.isoformat()
        if prefix:
            params["instanceIdPrefix"] = prefix
        token: str | None = None
        while True:
            headers = {CONTINUATION_HEADER: token} if token else None
            status, body, response_headers = await self._call("GET", "instances", params, headers)
            if status != 200:
                raise TargetError(f"listing instances failed ({status}): {redact_text(str(body))[:300]}")
            yield list(body)
            token = response_headers.get(CONTINUATION_HEADER) or response_headers.get(
                CONTINUATION_HEADER.title()
            )
            if not token:
                return

    async def status(self, instance_id: str, *, history: bool = False) -> dict[str, Any] | None:
        params = {"showHistory": str(history).lower(), "showHistoryOutput": str(history).lower()}
        status, body, _ = await self._call("GET", f"instances/{instance_id}", params)
        if status == 404:
            return None
        if status not in (200, 202):
            raise TargetError(f"reading {instance_id} failed ({status})")
        return dict(body)

    async def terminate(self, instance_id: str, reason: str) -> int:
        status, _, _ = await self._call("POST", f"instances/{instance_id}/terminate", {"reason": reason})
        return status

    async def restart(self, instance_id: str) -> tuple[int, str | None]:
        status, body, _ = await self._call(
            "POST", f"instances/{instance_id}/restart", {"restartWithNewInstanceId": "true"}
        )
        return status, body.get("id") if isinstance(body, dict) else None

    async def purge(self, instance_id: str) -> int:
        status, body, _ = await self._call("DELETE", f"instances/{instance_id}")
        return int(body.get("instancesDeleted", 0)) if status == 200 and isinstance(body, dict) else 0

    async def purge_window(self, start: datetime, end: datetime, statuses: list[str]) -> int:
        params = {"createdTimeFrom": start.isoformat(), "createdTimeTo": end.isoformat()}
        if statuses:
            params["runtimeStatus"] = ",".join(statuses)
        status, body, _ = await self._call("DELETE", "instances/", params)
        return int(body.get("instancesDeleted", 0)) if status == 200 and isinstance(body, dict) else 0


@dataclass(frozen=True, slots=True)
class LocalRun:
    """The storage and names of one ``claimsflow run --run-name NAME``."""

    run_name: str
    connection_string: str

    def env(self, simulator_url: str = NO_SIMULATOR) -> dict[str, str]:
        return run_environment(self.connection_string, simulator_url, self.run_name)

    @contextmanager
    def activated(self, simulator_url: str = NO_SIMULATOR) -> Iterator[Settings]:
        """The run's settings in the environment (the app reads them there), restored after."""
        from shared.runtime import get_runtime, reset_runtime

        with environment(self.env(simulator_url)):
            reset_runtime()
            try:
                yield get_runtime().settings
            finally:
                reset_runtime()

    @asynccontextmanager
    async def durable(self) -> AsyncIterator[DurableApi]:
        import function_app
        from local_host import LocalHost, VirtualClock

        host = LocalHost(
            function_app.app,
            connection_string=self.connection_string,
            settings_env=self.env(),
            clock=VirtualClock(datetime.now(UTC)),
        )
        await host.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield DurableApi(session, host.base_url, host.host_keys[0], host.clock.now())
        finally:
            await host.stop()


@dataclass(frozen=True, slots=True)
class DeployedApp:
    """A deployed Function App: its URL and its master key (from the environment)."""

    url: str
    key: str

    @contextmanager
    def activated(self) -> Iterator[Settings]:
        """The caller's environment must name the app's state account and lake (the same settings
        the app has, identity-based: ``AzureWebJobsStorage__*ServiceUri``, ``TASKHUB_NAME``, ...)."""
        from shared.runtime import get_runtime, reset_runtime

        reset_runtime()
        try:
            yield get_runtime().settings
        finally:
            reset_runtime()

    @asynccontextmanager
    async def durable(self) -> AsyncIterator[DurableApi]:
        async with aiohttp.ClientSession() as session:
            base = f"{self.url.rstrip('/')}/runtime/webhooks/durabletask"
            yield DurableApi(session, base, self.key, datetime.now(UTC))

    async def call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST an ops route with the master key; the route's JSON answer."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.url.rstrip('/')}/api/{path}", json=body or {}, headers={"x-functions-key": self.key}
            ) as resp,
        ):
            if resp.status == 401:
                raise TargetError(f"the app refused the key (401): check {APP_KEY_VARIABLE}")
            if resp.status >= 400:
                raise TargetError(f"{path} answered {resp.status}: {redact_text(await resp.text())[:300]}")
            return await resp.json()


Target = LocalRun | DeployedApp


def recorded_azurite() -> str | None:
    """The connection string of the Azurite the latest ``claimsflow run`` left running."""
    if not AZURITE_PID_FILE.exists():
        return None
    value = json.loads(AZURITE_PID_FILE.read_text()).get("connection_string")
    return str(value) if value else None


def resolve_target(run_name: str | None, app_url: str | None, key_variable: str = APP_KEY_VARIABLE) -> Target:
    """``--run-name`` or ``--app-url``: exactly one."""
    if bool(run_name) == bool(app_url):
        raise TargetError("give --run-name NAME (a local run) or --app-url URL (a deployed app)")
    if app_url:
        key = os.environ.get(key_variable, "")
        if not key:
            raise TargetError(f"set {key_variable} to the app's master key to use --app-url")
        return DeployedApp(app_url, key)
    assert run_name is not None
    try:
        check_run_name(run_name)
    except RunError as exc:
        raise TargetError(str(exc)) from None
    # where `claimsflow run` looks: AzureWebJobsStorage (default: the emulator's well-known
    # address), then the Azurite a run started and left running
    candidates = [os.environ.get("AzureWebJobsStorage", "UseDevelopmentStorage=true"), recorded_azurite()]
    for connection_string in candidates:
        if connection_string and storage_answers(connection_string):
            return LocalRun(run_name, connection_string)
    raise TargetError(
        "no storage answers: set AzureWebJobsStorage to the account the run used, or start the run's "
        "Azurite again (claimsflow run leaves it running; its address is in .claimsflow/azurite.json)"
    )
