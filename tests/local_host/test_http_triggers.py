"""HTTP functions served as the host serves them: routes under /api, and function keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

import function_app
from claimsflow.azurite import Azurite
from claimsflow.local_settings import sample_values
from local_host import LocalHost, VirtualClock
from shared.runtime import reset_runtime
from tests.local_host import local_host_apps as apps
from tests.local_host.local_host_apps import HOST_KEY, START, MakeHost

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]

FUNCTION_KEY = "guarded-function-key"
MASTER_KEY = "test-master-key"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def http_host(make_host: MakeHost) -> LocalHost:
    return await make_host(
        apps.eh_app,
        settings_env={"CLAIMS_HUB": "claims"},
        master_key=MASTER_KEY,
        function_keys={"guarded": [FUNCTION_KEY]},
    )


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, str]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.text()


async def test_anonymous_route_is_open(http_host: LocalHost, session: aiohttp.ClientSession) -> None:
    assert await call(session, "GET", f"{http_host.http_base_url}/open/world") == (200, "hello world")


async def test_function_route_needs_a_function_or_host_key(
    http_host: LocalHost, session: aiohttp.ClientSession
) -> None:
    url = f"{http_host.http_base_url}/guarded"
    assert (await call(session, "GET", url))[0] == 401
    assert (await call(session, "GET", url, params={"code": "wrong"}))[0] == 401
    status, text = await call(session, "POST", url, params={"code": FUNCTION_KEY, "q": "x"}, data=b"payload")
    assert status == 201
    assert json.loads(text) == {"method": "POST", "body": "payload", "q": "x"}
    assert (await call(session, "GET", url, headers={"x-functions-key": HOST_KEY}))[0] == 201
    assert (await call(session, "GET", url, params={"code": MASTER_KEY}))[0] == 201
    assert (await call(session, "PUT", url, params={"code": FUNCTION_KEY}))[0] == 405


async def test_admin_route_needs_the_master_key(http_host: LocalHost, session: aiohttp.ClientSession) -> None:
    url = f"{http_host.http_base_url}/ops/reset"
    assert (await call(session, "POST", url, params={"code": FUNCTION_KEY}))[0] == 401
    assert (await call(session, "POST", url, params={"code": HOST_KEY}))[0] == 401
    assert await call(session, "POST", url, params={"code": MASTER_KEY}) == (200, "reset")


async def test_the_apps_health_route_is_served_with_its_function_key(
    azurite: Azurite,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    session: aiohttp.ClientSession,
) -> None:
    lake = unique("lake")
    env = sample_values() | {
        "AzureWebJobsStorage": azurite.connection_string,
        "ENVIRONMENT": "test",
        "TASKHUB_NAME": unique("hub"),
        "LAKE_TABLES_URI": f"abfss://{lake}@devstoreaccount1.dfs.core.windows.net/Tables",
        "XACT_ATTACHMENTS_URI": f"abfss://{lake}@devstoreaccount1.dfs.core.windows.net/Files/xact",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_runtime()
    async with LocalHost(
        function_app.app,
        connection_string=azurite.connection_string,
        settings_env=env,
        clock=VirtualClock(START),
        host_keys=(HOST_KEY,),
    ) as host:
        live = await call(session, "GET", f"{host.http_base_url}/health")  # liveness: open
        url = f"{host.http_base_url}/health/ready"
        assert (await call(session, "GET", url))[0] == 401
        status, text = await call(session, "GET", url, params={"code": HOST_KEY})
    reset_runtime()
    assert live == (200, json.dumps({"status": "alive"}))
    assert status == 503  # the lake container was never created
    assert json.loads(text) == {
        "status": "not_ready",
        "checks": {
            "configuration": True,
            "state_tables": True,
            "state_blobs": True,
            "delta_location": False,
        },
        "reasons": ["delta_location_unreachable"],
    }
