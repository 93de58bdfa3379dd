"""The ops routes as the host serves them: the master key opens them, nothing else does; and the
`claimsflow` commands reach them with `--app-url` as they would a deployed app."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from typer.testing import CliRunner

from claimsflow.cli import app
from claimsflow.ops.target import APP_KEY_VARIABLE
from shared.state.deadletter import DeadLetterStatus
from tests.e2e.harness import Pipeline, s3_url, xact_body

pytestmark = pytest.mark.e2e

MakePipeline = Callable[..., Awaitable[Pipeline]]


async def post(url: str, key: str | None, body: object = None) -> tuple[int, object]:
    headers = {"x-functions-key": key} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body or {}, headers=headers) as resp,
    ):
        text = await resp.text()
        return resp.status, json.loads(text) if text and resp.content_type == "application/json" else text


@pytest.mark.parametrize("route", ["ops/flush", "ops/compact", "ops/deadletters/replay"])
async def test_ops_routes_refuse_calls_without_the_master_key(
    make_pipeline: MakePipeline, route: str
) -> None:
    pipeline = await make_pipeline()
    url = f"{pipeline.host.http_base_url}/{route}"
    assert (await post(url, None))[0] == 401
    assert (await post(url, "not-a-key"))[0] == 401
    assert (await post(url, pipeline.host.host_keys[0]))[0] == 401  # a host key is not the master key
    status, body = await post(url, pipeline.host.master_key, {"ids": ["xact_transfer:none"]})
    assert status == 200 and isinstance(body, list)


async def test_liveness_is_open_and_readiness_needs_a_key(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{pipeline.host.http_base_url}/health") as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "alive"})
        async with session.get(f"{pipeline.host.http_base_url}/health/ready") as resp:
            assert resp.status == 401
        ready = f"{pipeline.host.http_base_url}/health/ready?code={pipeline.host.host_keys[0]}"
        async with session.get(ready) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            assert body["status"] == "ready"


async def test_dlq_replay_and_flush_through_the_app(make_pipeline: MakePipeline) -> None:
    pipeline = await make_pipeline(
        {"faults": [{"path_contains": "later", "statuses": [503] * 5, "repeat": False}]}
    )
    trace_id = str(uuid.uuid4())
    await pipeline.deliver([xact_body(trace_id, [s3_url("/exports/A1B2C3/later.pdf", size=2048)])])
    await pipeline.settle()
    [letter] = pipeline.dead_letters()
    origin = pipeline.host.http_base_url.removesuffix("/api")
    env = {**pipeline.env, APP_KEY_VARIABLE: pipeline.host.master_key}

    def cli(*args: str) -> object:
        result = CliRunner().invoke(app, [*args, "--app-url", origin, "--json"], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    [replayed] = await asyncio.to_thread(cli, "dlq", "replay", letter.id)
    assert replayed["outcome"] == "started"
    await pipeline.host.run_until_idle()
    flushed = await asyncio.to_thread(cli, "flush", "now")
    assert {r["table"]: r["status"] for r in flushed}["xact_attachments"] == "flushed"  # type: ignore[index]
    assert pipeline.table("xact_attachments")["trace_id"].to_list() == [trace_id]
    stored = pipeline.runtime.dead_letters.get(letter.id)
    assert stored is not None and stored.status is DeadLetterStatus.REPLAYED

    refused = await asyncio.to_thread(
        CliRunner().invoke, app, ["flush", "now", "--app-url", origin], env={**env, APP_KEY_VARIABLE: "wrong"}
    )
    assert refused.exit_code == 2 and "401" in refused.output
