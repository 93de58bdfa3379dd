"""The Durable HTTP management API, driven by the real DurableOrchestrationClient 1.7 (built from the
host's binding JSON) and, where the client does not reach (paging, keys), by plain aiohttp."""

from __future__ import annotations

import json
from datetime import datetime

import aiohttp
import azure.durable_functions as df
import pytest

from local_host import LocalHost
from tests.local_host.local_host_apps import HOST_KEY, START

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]


async def test_binding_json_has_the_host_shape(host: LocalHost) -> None:
    binding = json.loads(host.client_binding_json)
    assert binding["taskHubName"] == host.task_hub
    assert binding["rpcBaseUrl"].endswith("/durabletask/")
    assert binding["requiredQueryStringParameters"] == f"code={HOST_KEY}"
    assert binding["managementUrls"]["id"] == "INSTANCEID"
    assert "{functionName}" in binding["creationUrls"]["createNewInstancePostUri"]


async def test_client_start_status_history_and_output(host: LocalHost) -> None:
    client = host.durable_client()
    instance_id = await client.start_new("chain", "c1")
    assert instance_id == "c1"
    pending = await client.get_status("c1")
    assert pending.runtime_status == df.OrchestrationRuntimeStatus.Pending
    await host.run_until_idle()
    status = await client.get_status("c1", show_history=True, show_history_output=True)
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert status.output == ["hello a", "hello b"]
    kinds = [e["EventType"] for e in status.historyEvents]
    assert kinds == ["ExecutionStarted", "TaskCompleted", "TaskCompleted", "ExecutionCompleted"]
    assert status.historyEvents[1]["FunctionName"] == "hello"
    assert status.historyEvents[1]["Result"] == "hello a"
    payload = client.create_http_management_payload("c1")
    assert payload["statusQueryGetUri"].startswith(host.base_url + "/instances/c1?")


async def test_start_existing_running_id_conflicts_and_unknown_name_is_400(host: LocalHost) -> None:
    client = host.durable_client()
    await client.start_new("waiter", "dup")
    with pytest.raises(Exception, match="already exists"):
        await client.start_new("waiter", "dup")
    with pytest.raises(Exception, match="doesn't exist"):
        await client.start_new("no_such_orchestrator")


async def test_raise_event_terminate_and_purge(host: LocalHost) -> None:
    client = host.durable_client()
    await client.start_new("waiter", "w1")
    await client.start_new("waiter", "w2")
    await host.run_until_idle()
    running = await client.get_status("w1")
    assert running.runtime_status == df.OrchestrationRuntimeStatus.Running
    assert running.custom_status == {"stage": "waiting"}
    await client.raise_event("w1", "approval", {"by": "ops"})
    await client.terminate("w2", "not needed")
    await host.run_until_idle()
    done = await client.get_status("w1")
    # The 1.7 client json.dumps the data and posts it as JSON again, so the extension stores a JSON
    # string and the orchestrator receives the text; the host mirrors that.
    assert done.output == {"approved": '{"by": "ops"}'}
    terminated = await client.get_status("w2")
    assert terminated.runtime_status == df.OrchestrationRuntimeStatus.Terminated
    assert terminated.output == "not needed"
    with pytest.raises(Exception, match="gone"):
        await client.raise_event("w1", "approval", 1)
    await client.terminate("w1", "again")  # 410 Gone, which the client accepts silently
    assert (await client.purge_instance_history("w1")).instances_deleted == 1
    assert (await client.purge_instance_history("w1")).instances_deleted == 0
    missing = await client.get_status("w1")
    assert missing.runtime_status is None
    purged = await client.purge_instance_history_by(created_time_from=datetime(2000, 1, 1))
    assert purged.instances_deleted == 1


async def test_suspend_resume_and_restart(host: LocalHost) -> None:
    client = host.durable_client()
    await client.start_new("waiter", "s1")
    await host.run_until_idle()
    await client.suspend("s1", "maintenance")
    assert (await client.get_status("s1")).runtime_status == df.OrchestrationRuntimeStatus.Suspended
    await client.raise_event("s1", "approval", True)
    await host.run_until_idle()
    assert (await client.get_status("s1")).runtime_status == df.OrchestrationRuntimeStatus.Suspended
    await client.resume("s1", "done")
    await host.run_until_idle()
    assert (await client.get_status("s1")).output == {"approved": "true"}
    restarted = await client.restart("s1", restart_with_new_instance_id=False)
    assert restarted["id"] == "s1"
    assert (await client.get_status("s1")).runtime_status == df.OrchestrationRuntimeStatus.Pending


async def test_webhook_routes_need_the_host_key(host: LocalHost) -> None:
    await host.start_orchestration("chain", instance_id="k1")
    url = f"{host.base_url}/instances/k1"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 401
        async with session.get(url, params={"code": "wrong"}) as response:
            assert response.status == 401
        async with session.get(url, params={"code": HOST_KEY}) as response:
            assert response.status == 202
            assert response.headers["Retry-After"] == "5"
        async with session.get(url, headers={"x-functions-key": HOST_KEY}) as response:
            assert (await response.json())["runtimeStatus"] == "Pending"
        async with session.get(f"{host.base_url}/instances/nope", params={"code": HOST_KEY}) as response:
            assert response.status == 404


async def test_list_pages_with_continuation_tokens(host: LocalHost) -> None:
    for i in range(130):
        await host.management.start("chain", f"page-{i:03d}", None)
    await host.start_orchestration("chain", instance_id="other-1")
    client = host.durable_client()
    first_page = await client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Pending])
    assert len(first_page) == 100  # the 1.7 client does not follow continuation tokens

    seen: list[str] = []
    token: str | None = None
    async with aiohttp.ClientSession() as session:
        while True:
            headers = {"x-ms-continuation-token": token} if token else {}
            params = {
                "code": HOST_KEY,
                "instanceIdPrefix": "page-",
                "runtimeStatus": "Pending,Running",
                "top": "50",
            }
            async with session.get(f"{host.base_url}/instances/", params=params, headers=headers) as response:
                assert response.status == 200
                seen += [item["instanceId"] for item in await response.json()]
                token = response.headers.get("x-ms-continuation-token")
            if not token:
                break
        assert sorted(seen) == [f"page-{i:03d}" for i in range(130)]
        params = {"code": HOST_KEY, "createdTimeFrom": START.isoformat(), "createdTimeTo": START.isoformat()}
        async with session.get(f"{host.base_url}/instances", params=params) as response:
            assert len(await response.json()) == 100
            assert response.headers.get("x-ms-continuation-token")
